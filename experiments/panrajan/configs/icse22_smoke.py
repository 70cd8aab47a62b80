"""ICSE'22 smoke run (the tests): a narrow ResNet-20 without BN on the embedded digits, 1 epoch.

Run: python -m experiments.panrajan icse22 --config experiments/panrajan/configs/icse22_smoke.py \
         --workdir /tmp/icse22_smoke   (~1-2 min on a 2-core CPU, most of it compiling)
Decomposition on 16 positives per class with no confidence bar, 200 test images.
"""


def get_config():
    return dict(
        train=dict(
            model="resnet20_nobn",
            width=0.25,
            dataset="digits",
            num_epochs=1,
            train_examples=512,
            global_batch_size=64,
            learning_rate=0.02,
            num_devices=1,
            log_every=10,
            checkpoint_every=10,
        ),
        decompose=dict(
            positives=16,
            confidence=0.0,
            delta=0.5,
            pairs=2,
            chunk=8,
            eval_examples=200,
            replace_examples=100,
            replace_confidence=0.0,
        ),
    )
