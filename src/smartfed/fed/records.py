"""What the server loop writes per client and per round, and per run at the end: typed records,
written to and read from the run folder by the same code (metrics.jsonl lines, summary.json)."""

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")  # a NaN loss stays NaN, not null

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


class ClientRecord(Record):
    client: int
    status: str = "ok"  # ok | dropped: why | rejected: why
    quota_total: int = 0  # sum of the quotas it was sent
    bytes_down: int = 0
    bytes_up: int = 0
    # spent even when the update is rejected (the energy model counts them)
    cpu_s: float | None = None
    tokens: int | None = None
    # accepted updates only
    num_examples: int | None = None
    train_loss: float | None = None
    seconds: float | None = None
    importance: dict[str, float] | None = None
    budget_k_avg: float | None = None  # a device that announced a smaller expert budget


class RoundRecord(Record):
    round: int
    clients: list[ClientRecord] = []
    accepted: int = 0
    train_loss: float | None = None
    quotas: dict[str, int] | None = None  # the quotas this round's states were trained with
    next_quotas: dict[str, int] | None = None
    importance: dict[str, float] | None = None  # the smoothed EEQA scores after this round
    bytes_up: int = 0
    bytes_down: int = 0
    cumulative_bytes_up: int = 0
    cumulative_bytes_down: int = 0
    energy_compute_j: float = 0.0
    energy_radio_j: float = 0.0
    heldout_loss: float | None = None
    heldout_loss_per_client: list[float] | None = None  # runs whose clients keep their own models
    heldout_items: list[tuple[float, int]] | None = None  # (summed NLL, answer tokens) per item: for confidence intervals
    curve_loss: float | None = None  # own-model runs scored on more items than the curve's: the mean loss on the curve's items
    wall_s: float = 0.0


class Summary(Record):
    method: str
    rounds: int
    initial_heldout_loss: float  # round 0, on the curve's items (eval.curve_examples; all of eval.examples by default)
    final_heldout_loss: float
    cumulative_bytes_up: int
    cumulative_bytes_down: int
    state_bytes: int
    pool_bytes_per_client_once: int
    energy_compute_j: float
    energy_radio_j: float
    client_cpu_s: float
    wall_s: float
    final_checkpoint: str
    scores: dict[str, float] | None = None
    scores_wall_s: float | None = None  # the benchmark scoring after the last round (generation, sandboxed programs)
