"""Paper scale: the MwT/MODA recipe (METHODS §4.4, §5.3, §5.7, §9), for accelerators.

Run: python -m experiments.reproduce mwt --scale paper --seeds 3 --data-dir DATA --distributed
     (tables mwt, mwt_reuse, moda, moda_replace; hours to days per table on one GPU; refused on
     a CPU without --yes)
Full width, CIFAR-10 with the papers' augmentation, 200 epochs, batch 128, SGD 0.05 Nesterov,
per-epoch cosine with T_max = 200, no weight decay; MwT's generators share the model's lr. Every
sub-task of §5.6 (1013) and 10 fine-tuning epochs (§4.6). `replace` is §5.7's protocol: strong
model 200 epochs on the 5 strong classes, weak LeNet5 200 epochs on 10% of the 6 weak-task
classes, states at 10 and 195 epochs; the other scales override a few of its fields.
"""


def get_config():
    return dict(
        models=dict(
            mwt=("vgg16", "resnet18", "simcnn", "rescnn"),
            mwt_reuse=("vgg16", "resnet18", "simcnn", "rescnn"),
            moda=("vgg16_moda", "resnet18", "mobilenet"),
            moda_replace=("vgg16_moda", "resnet18"),
        ),
        # Every row's `modjax train` settings but model, method, seed and data_dir.
        train=dict(
            dataset="cifar10",
            width=1.0,
            num_epochs=200,
            t_max=200,
            global_batch_size=128,
            learning_rate=0.05,
            log_every=100,
            checkpoint_every=1000,
        ),
        train_per_model={},
        tasks=dict(mwt=None, mwt_reuse=None, moda=None),  # None: all 1013 (mwt records it only)
        finetune_epochs=10,
        for_accelerators=True,
        replace=dict(  # `experiments.reproduce.replace.SETTINGS`, in its order
            dataset="cifar10",
            image_size=None,
            strong_classes=(0, 1, 2, 3, 4),
            weak_classes=(5, 6, 7, 8, 9),
            target_classes=(0, 1, 2, 3, 4),
            weak_fraction=0.1,
            strong_model=dict(width=1.0),  # the name is the row's model
            weak_model=dict(name="lenet5", width=1.0),
            strong_epochs=200,
            strong_train_examples=None,
            weak_epochs=200,
            underfit_epoch=10,
            overfit_epoch=195,
            batch_size=128,
            learning_rate=0.05,
            threshold=0.9,
            adapter_epochs=5,
        ),
    )
