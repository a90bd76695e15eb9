"""One rank of the 2-rank gloo job of tests/test_distributed.py (started by torchrun).

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/dist_worker.py OUT CONFIG

Writes ``OUT/rank<r>.pt`` with what the test checks: the normaliser merged from uneven per-rank
data, every batch this rank fed its observation normaliser, the parameters after training, the ADR
state, the divergence error, and the resumed run's parameters and RNG.
"""

import sys
import traceback
from pathlib import Path

import torch

from robolearn.config import load_config
from robolearn.distributed import Distributed, RanksDiverged, exit_worker
from robolearn.models.normalizer import EmpiricalNormalizer
from robolearn.trainer import Trainer


def main(out: Path, config_path: str) -> None:
    dist = Distributed.from_env("cpu", "auto")
    rank, results = dist.rank, {"world_size": dist.world_size, "backend": dist.backend,
                                "threads": torch.get_num_threads()}

    # 1. normaliser statistics merged over ranks, from uneven batches
    x = torch.randn(50 + 30 * rank, 5, generator=torch.Generator().manual_seed(100 + rank)) * (rank + 1) + rank
    normalizer = EmpiricalNormalizer(5)
    normalizer.update(x[:20], dist.reduce_moments)
    normalizer.update(x[20:], dist.reduce_moments)
    results["norm_data"] = x
    results["norm_stats"] = (normalizer.count.clone(), normalizer.mean.clone(), normalizer.var.clone(),
                             normalizer.min.clone(), normalizer.max.clone())

    # 2. two iterations of PPO on Nav with ADR; only rank 1 evaluates ADR boundaries
    config = load_config(config_path)
    run_dir = out / ("run" if rank == 0 else f"run_rank{rank}")  # rank 1 must not create its directory
    trainer = Trainer(config, run_dir, dist=dist)
    adr = trainer.env.randomizer.adr
    adr.boundary_prob = 1.0 if rank == 1 else 0.0
    recorded = []
    if rank == 0:
        record = adr.record
        adr.record = lambda tags, perf: (recorded.append(len(tags)), record(tags, perf))
    normalizer = trainer.policy.obs_normalizers["policy"]
    seen, update = [], normalizer.update
    normalizer.update = lambda x, reduce=None: (seen.append(x.reshape(-1, x.shape[-1]).clone()), update(x, reduce))
    trainer.learn()
    normalizer.update = update
    results["normalizer_inputs"] = torch.cat(seen)
    results["normalizer"] = {k: v.clone() for k, v in normalizer.state_dict().items()}
    results["params"] = {k: v.clone() for k, v in trainer.policy.state_dict().items()}
    results["lr"] = trainer.algorithm.lr
    results["adr"] = {"ranges": adr.ranges.copy(), "moves": adr.moves, "recorded": recorded,
                      "queues": [[len(q) for q in pair] for pair in adr.queues]}
    results["env_steps"] = trainer.env_steps
    results["rng_after_training"] = torch.get_rng_state()

    # 3. a rank whose parameters drift is caught, on every rank
    param = next(trainer.policy.parameters())
    saved = param.detach().clone()
    if rank == 1:
        with torch.no_grad():
            param.add_(1e-6)
    try:
        dist.check_identical(trainer.policy, 99)
        results["divergence"] = None
    except RanksDiverged as err:
        results["divergence"] = str(err)
    with torch.no_grad():
        param.copy_(saved)

    # 4. resume the distributed run: every rank loads rank 0's checkpoint, each its own RNG streams
    more = config.model_copy(update={"trainer": config.trainer.model_copy(update={"max_iterations": 3})})
    resumed = Trainer.from_checkpoint(out / "run", config=more, run_dir=run_dir, dist=dist)
    results["rng_on_resume"] = torch.get_rng_state()
    results["resumed_iteration"] = resumed.iteration
    resumed.learn()
    results["resumed_params"] = {k: v.clone() for k, v in resumed.policy.state_dict().items()}
    results["resumed_env_steps"] = resumed.env_steps
    torch.save(results, out / f"rank{rank}.pt")
    dist.shutdown()


if __name__ == "__main__":
    try:
        main(Path(sys.argv[1]), sys.argv[2])
    except BaseException:
        traceback.print_exc()
        exit_worker(1)
    exit_worker(0)  # as robolearn's CLI does: no interpreter finalisation with gloo threads alive
