"""The training engine: the loop (``train``), its optimizers (``optim``, ``rowadam``), the gradient
paths that skip autograd where a model allows (``gradients``, ``mf_step``), and stacking several
members into one module (``stacked``). Models, data and metrics live beside it in ``ncf_core``."""
