"""The README's main job: MODA on an MLP over the embedded scikit-learn digits (no data files).

Run: modjax pipeline --config experiments/configs/default.py --workdir runs/default   (~30 s CPU)
It trains the MLP with MODA's activation losses, extracts one module per digit, composes the
digits 3, 5, 8 from their modules alone and exports that classifier as one file.
Expected: parent test accuracy ≈ 0.95; composed ≈ parent restricted to 3, 5, 8 at ~25% of its
parameters.
"""


def get_config():
    return dict(
        model="mlp",
        depth=2,
        method="moda",
        dataset="digits",
        num_epochs=20,
        global_batch_size=64,
        learning_rate=0.05,
        log_every=10,
        checkpoint_every=100,
    )
