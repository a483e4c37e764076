from __future__ import annotations

import torch
import torch.distributed as dist

from .._validation import check_integer
from .base_target_miner import TARGET_MINERS, BaseTargetMiner, min_pairwise_hamming_distance
from .random_target_miner import check_bit_probability

# Chosen from measurements on digits (docs/results.md, "DPN-A: schedule and guard").
DEFAULT_WARMUP_EPOCHS = 2
DEFAULT_UPDATE_EVERY = 3


@TARGET_MINERS.register(
    "adaptive", config_keys=("p", "update_every", "warmup_epochs", "min_distance_floor")
)
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

    **Schedule.** The first ``warmup_epochs`` epochs collect no votes and never update; after
    them, the codebook is updated every ``update_every`` epochs (at the end of epochs
    ``warmup_epochs + update_every``, ``warmup_epochs + 2 * update_every``, ...; 1-based).
    Votes from the network's first epochs are the noisiest, and updating from them collapses
    the codebook (docs/results.md measures it); the defaults wait and update rarely.

    **Guard.** An update whose codebook would have a minimum pairwise Hamming distance below
    ``floor`` is refused *whole*: the codebook stays as it was, the votes are discarded and
    ``num_refused_updates`` grows by one (``proposed_min_hamming_distance`` records the refused
    proposal). ``floor`` is the initial codebook's minimum distance with
    ``min_distance_floor="initial"`` (the default), the given number with a number, and no guard
    with ``None`` (or 0, which never refuses: a distance is never negative). When the current
    codebook is already below the floor (a number floor above the initial minimum), an update is
    refused only if it would lower the minimum further. Whole rather than bit by bit, because
    the votes are one joint estimate of where the classes lie: a subset of the flips is a
    codebook nobody voted for, and which subset would depend on an arbitrary visiting order;
    refusing keeps a codebook that is at worst the initial random one. Every process refuses
    alike (the votes are all-reduced).

    **Algorithm 1 as written** (update after every epoch from the first, no guard):
    ``AdaptiveTargetMiner(C, K, warmup_epochs=0, update_every=1, min_distance_floor=None)``.

    Args:
        num_classes, num_bits, seed: the codebook's size and the seed of its random start.
        p: ratio of ``+1`` bits in the initial random codebook.
        update_every: epochs between updates, after the warm-up.
        warmup_epochs: epochs before the first epoch whose votes count.
        min_distance_floor: ``"initial"``, a number of bits ``>= 0``, or ``None`` (no guard).

    Where this differs from the DPN authors' code (kamwoh/DPN), see
    docs/concepts/differences-from-authors-code.md: they vote with every sample of a class
    (``update_rate`` 1.0), leave a tied bit at 0, use only the votes of the update epoch,
    vote with the first label of a multi-label sample, and never update by default.
    """

    def __init__(
        self,
        num_classes: int,
        num_bits: int,
        p: float = 0.5,
        update_every: int = DEFAULT_UPDATE_EVERY,
        seed: int = 0,
        warmup_epochs: int = DEFAULT_WARMUP_EPOCHS,
        min_distance_floor: str | float | None = "initial",
        **kwargs,
    ):
        p = check_bit_probability(p, num_classes)
        update_every = check_integer(update_every, "update_every", minimum=1)
        warmup_epochs = check_integer(warmup_epochs, "warmup_epochs", minimum=0)
        if min_distance_floor is not None and min_distance_floor != "initial":
            if isinstance(min_distance_floor, bool) or not isinstance(
                min_distance_floor, (int, float)
            ):
                raise ValueError(
                    'min_distance_floor must be "initial", a number of bits >= 0 or None; '
                    f"got {min_distance_floor!r}"
                )
            if not 0 <= min_distance_floor <= num_bits:
                raise ValueError(
                    f"min_distance_floor must be in [0, num_bits] = [0, {num_bits}]; "
                    f"got {min_distance_floor}"
                )
        self.p = float(p)
        self.update_every = update_every
        self.warmup_epochs = warmup_epochs
        self.min_distance_floor = min_distance_floor
        super().__init__(num_classes, num_bits, seed=seed, **kwargs)
        if min_distance_floor == "initial":  # the seeded initial codebook, same on every process
            self.floor = float(self.min_hamming_distance) if num_classes > 1 else 0.0
        elif min_distance_floor is None:
            self.floor = None
        else:
            self.floor = float(min_distance_floor)
        self.add_to_recordable_attributes(
            list_of_names=["p", "update_every", "warmup_epochs", "num_refused_updates"]
        )
        self.add_to_recordable_attributes(
            list_of_names=["num_voters", "num_changed_bits", "proposed_min_hamming_distance"],
            is_stat=True,
        )
        self.register_buffer("votes", torch.zeros(num_classes, num_bits, dtype=torch.float64))
        self.register_buffer("voters", torch.zeros(num_classes, dtype=torch.float64))
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))
        # saved with the codebook, so that a resumed run reports the refusals of the whole run
        self.register_buffer("refused_updates", torch.zeros((), dtype=torch.long))
        self._epochs_seen = 0  # a host copy: observe() must not sync with the device per step
        self.num_voters = 0
        self.num_changed_bits = 0
        self.num_refused_updates = 0
        self.proposed_min_hamming_distance = float(self.min_hamming_distance)

    def make_targets(self, generator: torch.Generator) -> torch.Tensor:
        bits = torch.rand(self.num_classes, self.num_bits, generator=generator) < self.p
        return bits.to(torch.float32) * 2 - 1

    @torch.no_grad()
    def observe(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        labels = self.check_labels(labels).to(embeddings.device)
        if self._epochs_seen < self.warmup_epochs:
            return  # warm-up: these votes would never count
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
        """Count an epoch; on the schedule, apply the votes unless the guard refuses them.

        Returns whether the codebook changed: False for a refused update, and for an update
        that flips no bit (no correctly coded sample voted, or the votes confirm every bit).
        """
        self.epochs_seen += 1
        self._epochs_seen += 1
        after_warmup = self._epochs_seen - self.warmup_epochs
        if after_warmup <= 0 or after_warmup % self.update_every != 0:
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
        new = new.to(self.targets.dtype)
        self.num_voters = int(voters.sum())
        self.votes.zero_()
        self.voters.zero_()
        proposed = min_pairwise_hamming_distance(new)
        self.proposed_min_hamming_distance = proposed
        if self.refuses(proposed):
            self.refused_updates += 1
            self.num_refused_updates += 1
            self.num_changed_bits = 0
            return False
        self.num_changed_bits = int((new != old).sum())
        if not self.num_changed_bits:  # no votes, or votes that confirm every bit
            return False
        self.targets.copy_(new)
        self.update_stats()
        return True

    def refuses(self, proposed_min_distance: float) -> bool:
        """Whether the guard refuses a codebook whose minimum pairwise distance is given."""
        if self.floor is None or self.num_classes < 2:
            return False
        current = float(self.min_hamming_distance)
        return proposed_min_distance < min(self.floor, current)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints written before the guard existed have no refusal counter.
        state_dict.setdefault(prefix + "refused_updates", torch.zeros((), dtype=torch.long))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        # Also when a parent module (the loss, the method) loads: the host copies and the
        # codebook's current minimum distance, which the guard compares against.
        self._epochs_seen = int(self.epochs_seen)
        self.num_refused_updates = int(self.refused_updates)
        self.update_stats()

    def reset_stats(self) -> None:
        # The proposal describes the last update, not the last call: keep it across resets.
        saved = self.proposed_min_hamming_distance
        super().reset_stats()
        self.proposed_min_hamming_distance = saved

    def extra_repr(self) -> str:
        return super().extra_repr() + (
            f", p={self.p}, update_every={self.update_every}, "
            f"warmup_epochs={self.warmup_epochs}, min_distance_floor={self.min_distance_floor!r}"
        )
