"""DeepArc smoke run: a tiny ResNet-14 on the embedded digits, four short epochs (a model the attack can fool), a seconds-long analysis.

Run: python -m experiments.deeparc --config experiments/deeparc/configs/smoke.py \
         --workdir /tmp/deeparc_smoke   (~1 min on a 2-core CPU; the tests)
"""


def get_config():
    return dict(
        train=dict(
            model="resnet14",
            width=0.125,
            dataset="digits",
            num_epochs=4,
            global_batch_size=64,
            train_examples=1024,
            num_devices=1,
            log_every=10,
            checkpoint_every=10,
        ),
        analysis=dict(
            cka_examples=64,
            passes=1,
            eval_examples=64,
            max_remove=2,
            subsets=2,
            repair_examples=32,
            repair_test=32,
            repair_epochs=1,
            repair_lr=1e-3,
            repair_top_k=2,
            repair_max_share=None,
            pgd_steps=2,
            finetune_epochs=0,  # > 0: also fine-tune each shrunk network
            finetune_examples=5000,
        ),
    )
