"""The Trainium backend: NxD (neuronx-distributed) config, models and training loop.

Importing this package never needs neuronx_distributed or torch_xla; only running the
backend does, and it then stops with one line naming what is missing (llm_launch.train.neuron.runtime).
"""
