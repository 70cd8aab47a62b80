"""DeepArc at CPU scale: ResNet-20 at width 0.5 on 15k CIFAR-10 images (JPEG copy), 2 epochs.

Run: nice -n 10 python -m experiments.deeparc --config experiments/deeparc/configs/cpu.py \
         --data-dir ../shared/datasets --workdir runs/deeparc_cpu   (~30-40 min on 2 busy cores;
         resumable: rerun the same command)
Recipe: modjax defaults (SGD 0.05, Nesterov, per-epoch cosine, weight decay 5e-4 on all
parameters, CIFAR normalization, zero-pad crop) rather than DeepArc's (SGD 0.01, L2 0.005 on
conv kernels, pixels / 255, reflect pad; `paper.py`), which needs far more epochs than a CPU run
allows.

Analysis (the CPU analysis of every `cpu*.py` config): fewer CKA images and passes than the
paper (`paper.py`), 3 subsets per size; repair on the paper's 1000 + 1000 images with the top-5
blocks *within 20% of the parameters* (`repair_max_share`: a ResNet-20's stage-3 block alone
holds ~27%, while the paper's top-5 of 54 blocks is < 20% of ResNet-110) at lr 1e-2, since 10
epochs at 1e-4 barely move a small model.
"""


def get_config():
    return dict(
        train=dict(
            model="resnet20",
            width=0.5,
            dataset="cifar10",
            num_epochs=2,
            train_examples=15_000,
            global_batch_size=128,
            learning_rate=0.05,
            weight_decay=5e-4,
            log_every=25,
            eval_every=4,
            checkpoint_every=40,
            keep_checkpoints=2,
        ),
        analysis=dict(
            cka_examples=1024,
            passes=3,
            eval_examples=1000,
            max_remove=4,
            subsets=3,
            repair_examples=1000,
            repair_test=1000,
            repair_epochs=10,
            repair_lr=1e-2,
            repair_top_k=5,
            repair_max_share=0.2,
            pgd_steps=7,
            finetune_epochs=0,  # > 0: also fine-tune each shrunk network
            finetune_examples=5000,
        ),
    )
