"""FSE'20 at paper scale on the CPU: the MLP-k×49 parents, baselines and decompositions.

Run: nice -n 10 python -m experiments.panrajan fse20 --config \
         experiments/panrajan/configs/fse20_cpu.py --data-dir ../shared/datasets \
         --workdir runs/panrajan_fse20 --results benchmarks/results/panrajan_fse20_cpu
     (the train stage ~1 h on a shared 2-core CPU, the evaluation a few minutes; resumable)
The paper's recipe (METHODS §7.1): Keras Adam 1e-3, batch 32, 50 epochs for the 8 Table-1
parents (MNIST and Fashion-MNIST × 1-4 hidden layers of 49) and the faulty MNIST-1 (500 training
images of digit 5); two-class MLP-4×49 baselines for 20 epochs, vmapped in chunks: the 45
intra-dataset pairs per dataset, then the MNIST × Fashion-MNIST pairs (i, i) and all 100.
"""


def get_config():
    return dict(
        datasets=dict(MNIST="mnist", FMNIST="fashion_mnist"),  # table name: modjax dataset
        depths=(1, 2, 3, 4),
        epochs=50,
        faulty=dict(digit=5, keep=500),  # MNIST-1-faulty5: 500 training images of digit 5
        baseline_epochs=20,
        intra_pairs=None,  # None: all 45 class pairs per dataset
        inter_pairs=None,  # None: all 100 MNIST × Fashion-MNIST pairs (and the 10 (i, i) first)
        chunk=15,  # intra baselines per vmapped call
        inter_chunk=10,
        confidence=0.9,  # CI positives: p above this (the paper)
    )
