"""DeepArc smoke run: a tiny ResNet-14 on the embedded digits, one epoch (seconds).

Run: python experiments/deeparc.py --config experiments/configs/deeparc_smoke.py \
         --workdir /tmp/deeparc_smoke --analysis smoke
"""


def get_config():
    return dict(
        model="resnet14",
        width=0.125,
        dataset="digits",
        num_epochs=1,
        global_batch_size=64,
        train_examples=256,
        num_devices=1,
        log_every=10,
        checkpoint_every=10,
    )
