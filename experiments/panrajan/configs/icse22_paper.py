"""Pan & Rajan ICSE'22 paper scale (METHODS §3.8, §7.7): ResNet-20 without BN, 200 epochs.

Run: python -m experiments.panrajan icse22 --config experiments/panrajan/configs/icse22_paper.py \
         --data-dir ../shared/datasets --workdir runs/panrajan_icse22_paper
     (about an hour of training on one GPU; the decomposition uses 1000 positives per class)
For ResNet-32/56 override `model` ("resnet32_nobn", "resnet56_nobn") in a copy of this file.
Recipe: the paper's optimizer and widths are unknown; the DeepArc optimizer (SGD 0.01,
momentum 0.9 without Nesterov, per-epoch cosine, batch 128) with weight decay 5e-4 at width 1
(16/32/64 channels) and inputs / 255 as in the Keras reference code. Decomposition: METHODS §7.7
(1000 confident positives at p > 0.9, TI at 1:1, δ = 0.5), on all 10k test images.
"""


def get_config():
    return dict(
        train=dict(
            model="resnet20_nobn",
            width=1.0,
            dataset="cifar10",
            num_epochs=200,
            global_batch_size=128,
            learning_rate=0.01,
            nesterov=False,
            weight_decay=5e-4,
            normalize=False,
            log_every=100,
            eval_every=10,
            checkpoint_every=390,
            keep_checkpoints=3,
        ),
        decompose=dict(
            positives=1000,
            confidence=0.9,
            delta=0.5,
            pairs=6,
            chunk=100,
            eval_examples=None,
            replace_examples=None,
            replace_confidence=0.9,
        ),
    )
