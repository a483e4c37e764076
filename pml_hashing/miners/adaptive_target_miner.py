from __future__ import annotations

import torch
import torch.distributed as dist

from .._validation import check_integer
from .base_target_miner import TARGET_MINERS, BaseTargetMiner


@TARGET_MINERS.register("adaptive", config_keys=("p", "update_every"))
class AdaptiveTargetMiner(BaseTargetMiner):
    """DPN-A (DPN paper, Algorithm 1): random initial targets, updated from observed outputs.

    During an epoch the loss calls :meth:`observe` with its detached outputs ``v``. A sample is
    *correctly coded* when the target nearest (in Hamming distance) to ``b = binarize(v)`` is
    its own class's and no other class ties with it; only correctly coded samples vote. For
    each class ``c`` the miner sums ``b`` over those samples; every ``update_every`` epochs
    :meth:`end_epoch` sets ``t_c = sign(votes_c)`` (the sign of the mean of the signs):

    * a tied bit (``votes == 0``) keeps its previous value, so no bit is ever 0;
    * a class with no correctly coded sample keeps its code;
    * with ``torch.distributed`` initialized, votes are summed over all processes before the
      sign (``all_reduce``), so every process holds the same new codebook.

    Multi-hot labels ``(N, C)``: a sample is correctly coded when every class tied for the
    nearest target is one of its labels; it then votes for each of its labels.

    With ``update_every > 1`` the votes of every epoch since the last update count.
    Votes are collected while the network changes within the epoch: they approximate
    Algorithm 1's "v <- Psi(x; w)" pass over the data, without a second forward pass.
    """

    def __init__(
        self,
        num_classes: int,
        num_bits: int,
        p: float = 0.5,
        update_every: int = 1,
        seed: int = 0,
        **kwargs,
    ):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1]; got {p}")
        update_every = check_integer(update_every, "update_every", minimum=1)
        self.p = float(p)
        self.update_every = update_every
        super().__init__(num_classes, num_bits, seed=seed, **kwargs)
        self.add_to_recordable_attributes(list_of_names=["p", "update_every"])
        self.add_to_recordable_attributes(
            list_of_names=["num_voters", "num_changed_bits"], is_stat=True
        )
        self.register_buffer("votes", torch.zeros(num_classes, num_bits, dtype=torch.float64))
        self.register_buffer("voters", torch.zeros(num_classes, dtype=torch.float64))
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))
        self.num_voters = 0
        self.num_changed_bits = 0

    def make_targets(self, generator: torch.Generator) -> torch.Tensor:
        bits = torch.rand(self.num_classes, self.num_bits, generator=generator) < self.p
        return bits.to(torch.float32) * 2 - 1

    @torch.no_grad()
    def observe(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        labels = self.check_labels(labels).to(embeddings.device)
        codes = torch.where(embeddings.detach() >= 0, 1.0, -1.0).to(torch.float64)
        targets = self.targets.to(device=codes.device, dtype=torch.float64)
        distances = (self.num_bits - codes @ targets.T) / 2  # (N, C)
        nearest = distances == distances.min(dim=1, keepdim=True).values  # tied minima
        if labels.ndim == 1:
            own = torch.nn.functional.one_hot(labels, self.num_classes).bool()
        else:
            own = labels.bool()
        correct = ~(nearest & ~own).any(dim=1)  # every nearest class is one of its labels
        weights = (own & correct[:, None]).to(torch.float64)  # (N, C)
        self.votes += (weights.T @ codes).to(self.votes.device)
        self.voters += weights.sum(dim=0).to(self.voters.device)

    @torch.no_grad()
    def end_epoch(self) -> bool:
        """Count an epoch; every ``update_every`` epochs apply the votes. Returns if it updated."""
        self.epochs_seen += 1
        if int(self.epochs_seen) % self.update_every != 0:
            return False
        votes, voters = self.votes.clone(), self.voters.clone()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            backend_device = votes.device
            if dist.get_backend() == "nccl" and backend_device.type != "cuda":
                votes, voters = votes.cuda(), voters.cuda()
            dist.all_reduce(votes)
            dist.all_reduce(voters)
            votes, voters = votes.to(backend_device), voters.to(backend_device)
        old = self.targets.clone()
        new = torch.where(votes > 0, 1.0, torch.where(votes < 0, -1.0, old.to(votes.dtype)))
        self.targets.copy_(new.to(self.targets.dtype))
        self.num_voters = int(voters.sum())
        self.num_changed_bits = int((self.targets != old).sum())
        self.votes.zero_()
        self.voters.zero_()
        self.update_stats()
        return True

    def extra_repr(self) -> str:
        return super().extra_repr() + f", p={self.p}, update_every={self.update_every}"
