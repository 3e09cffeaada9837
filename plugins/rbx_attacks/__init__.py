"""First-party plugin for adversarial robustness: attacks as methods and the
``adversarial`` suite.

:mod:`rbx_attacks.pgd` is the attack core other plugins may import (PGD in an
ℓ∞ or ℓ2 ball, the projection, the :class:`~rbx_attacks.threat.Budget` record).
"""
