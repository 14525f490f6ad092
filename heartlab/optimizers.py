"""torch optimizers as gin configurables: ``fit.optimizer = @torch.optim.AdamW``, ``torch.optim.AdamW.lr = 1e-3``.

Bindings reach an optimizer only when it is built through gin (by ``fit``), never a direct call.
"""

import gin
import torch

OPTIMIZERS = (torch.optim.AdamW, torch.optim.Adam, torch.optim.SGD)

for _optimizer in OPTIMIZERS:
    gin.external_configurable(_optimizer, module="torch.optim")
