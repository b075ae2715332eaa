"""Stage 3, with verifiable rewards: GRPO (`trl.GRPOTrainer`) against the reward model and reward functions.

GRPO samples `num_generations` replies per prompt and takes each reply's advantage against its group
(the replies to the same prompt), so, like RLOO, it needs no value model. Its rewards are the reward
model's score of the chat (prompt plus reply, through the policy's own tokenizer and chat template, as in
reward training) and, optionally, verifiable reward functions the installation offers: Python functions
`f(prompts, completions, **kwargs) -> list[float]` that TRL calls with every batch of replies (a
completion is `[{"role": "assistant", "content": ...}]`; None leaves that reply out of that function's
mean). The spec's config names them by dotted path, written by the job layer from the names the round
chose among the installation's REWARD_FUNCTIONS: nothing an admin types is imported. The trainer is a
Hugging Face Trainer, so checkpoints and `resume_from_checkpoint` work as in SFT. Around TRL:

- GRPO cannot cut a prompt to fit: prompts too long for a reply in the model's context are left out
  (counted as `prompts_too_long`), as for RLOO.
- The reward model gets the policy's tokenizer as its processing class (config.config_problems checks the two
  share one), and its pad token, which TRL reads from the model's config.
- TRL names each reward source in its logs: `rewards/<name>/mean`, the reward model by its folder's name.
- With a LoRA adapter (the `adapter` setting) no reference is loaded: TRL 1.12 computes the reference's
  log-probabilities with the adapter switched off (peft's disable_adapter), which is the SFT model the adapter
  started from. Without one, TRL loads the reference itself from the policy's folder (model_init_kwargs).

Held-out evaluation: what RLOO's is (evaluate.evaluate_policy: mean reward, KL to the SFT model, win rates
judged by the reward model), plus each reward function's mean on replies the policy and the SFT model
sample for the held-out prompts (`reward_function/<name>` and `reward_function/<name>_sft`).
"""

import importlib
from collections.abc import Callable

from datasets import Dataset
from transformers import AutoModelForCausalLM
from trl import GRPOConfig, GRPOTrainer

from . import evaluate
from .common import (
    Job,
    ProgressCallback,
    adapter_config,
    publish,
    save_for,
    start_work,
    training_arguments,
)
from .data import stage_rows
from .policy import policy_tokenizer, scored_model


def reward_functions_load(paths: list[str]) -> list[Callable]:
    """Import each reward function by the dotted path (module.function) the job layer wrote into the spec."""
    functions = []
    for path in paths:
        module, _, name = path.rpartition(".")
        if not module:
            raise ValueError(f"reward function {path!r} is not a dotted path (module.function): a round names the "
                             "installation's REWARD_FUNCTIONS, which the job layer resolves to their paths")
        try:
            function = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"reward function {path} cannot be imported: {error}") from None
        if not callable(function):
            raise TypeError(f"reward function {path} is not a function")
        functions.append(function)
    return functions


def train(job: Job) -> None:
    c = job.config
    # Before any model loads: a reward function that is not there fails the run in a second.
    functions = reward_functions_load(c["reward_functions"])
    args = training_arguments(
        job, GRPOConfig, num_generations=c["num_generations"], max_completion_length=c["response_length"],
        beta=c["kl_coef"], temperature=c["temperature"], num_iterations=c["num_iterations"], epsilon=c["epsilon"],
        loss_type=c["loss_type"], scale_rewards=c["scale_rewards"], reward_weights=c["reward_weights"],
        log_completions=False,
        model_init_kwargs={"attn_implementation": c["attn_implementation"], "dtype": job.load_dtype},  # its reference
    )
    main = args.process_index == 0
    checkpoint = start_work(job, args)
    tokenizer = policy_tokenizer(job)
    policy = AutoModelForCausalLM.from_pretrained(job.base_model, attn_implementation=c["attn_implementation"],
                                                  dtype=job.load_dtype)
    # With an adapter TRL loads no reference: it is the policy with its adapter switched off.
    lora = adapter_config(job, policy, tokenizer)
    room = policy.config.max_position_embeddings - c["response_length"]
    rows = stage_rows("grpo", job.train_path)
    fitting = [r for r in rows if len(tokenizer.apply_chat_template(
        r["prompt"], tokenize=True, add_generation_prompt=True, return_dict=False)) <= room]
    per_batch = c["per_device_train_batch_size"] * c["gradient_accumulation_steps"] * args.world_size
    if len(fitting) < max(1, per_batch // c["num_generations"]):
        raise ValueError(f"only {len(fitting)} of {len(rows)} prompts leave room for a {c['response_length']}-token "
                         "reply in the model's context: fewer than one batch")
    reward_model = scored_model(job.reward_model, pad_token_id=tokenizer.pad_token_id,
                                attn_implementation=c["attn_implementation"])
    callback = ProgressCallback(job, start_fields={"prompts_too_long": len(rows) - len(fitting),
                                                   "adapter": job.adapter})
    trainer = GRPOTrainer(
        model=policy, reward_funcs=[reward_model, *functions], args=args, train_dataset=Dataset.from_list(fitting),
        processing_class=tokenizer, reward_processing_classes=[tokenizer] + [None] * len(functions),
        callbacks=[callback], peft_config=lora,
    )
    # What the trainer itself resolved and will use, for the record in the start event.
    callback.start_fields["trl_config"] = {
        "reward_funcs": list(trainer.reward_func_names), "reward_weights": trainer.reward_weights.tolist(),
        "beta": trainer.beta, "num_generations": trainer.num_generations, "loss_type": trainer.loss_type,
        "scale_rewards": trainer.scale_rewards, "max_completion_length": trainer.max_completion_length,
        "temperature": trainer.temperature, "reference_loaded": trainer.ref_model is not None,
    }
    trainer.train(resume_from_checkpoint=checkpoint)
    names = trainer.reward_func_names[1:]

    def held_out(folder) -> dict:
        metrics = evaluate.evaluate_policy(str(folder), job.eval_path, c, reference_dir=job.base_model,
                                           reward_dir=job.reward_model, previous_dir=job.previous_policy,
                                           seed=job.seed)
        if functions and job.eval_path:
            for label, model_dir in (("", str(folder)), ("_sft", job.base_model)):
                scores = reward_functions_score(model_dir, job.eval_path, c, functions=functions, seed=job.seed)
                metrics.update({f"reward_function/{name}{label}": score for name, score in zip(names, scores)})
        return metrics

    publish(job, main=main, wait=trainer.accelerator.wait_for_everyone,
            save=save_for(job, trainer, model_class=AutoModelForCausalLM), evaluate=held_out, train_metrics={**callback.summary, "prompts_too_long": len(rows) - len(fitting)})


def reward_functions_score(model_dir: str, eval_path: str, config: dict, *, functions: list[Callable],
                           seed: int = 0) -> list[float | None]:
    """Return each reward function's mean over one reply sampled per held-out prompt (None: it scored none).

    The functions are called as TRL calls them, with prompts, completions and completion_ids (and no
    trainer_state, log_metric or dataset columns: there is no trainer here).
    """
    from training.generation import SamplingSettings
    from training.generation.local import SAVED, generate_ids, model_load

    rows = stage_rows("grpo", eval_path, limit=config["eval_max_rows"])
    loaded = model_load(model_dir, dtype=SAVED, keep=False)
    tokenizer, length = loaded.tokenizer, config["response_length"]
    room = loaded.model.config.max_position_embeddings - length
    prompts = [tokenizer.apply_chat_template(r["prompt"], tokenize=True, add_generation_prompt=True,
                                             return_dict=False)[-room:] for r in rows]
    # A run's seed may be negative, which SamplingSettings refuses; torch takes it modulo 2**64 anyway.
    sampled = SamplingSettings(temperature=config["temperature"], max_new_tokens=length, seed=seed % 2**64)
    replies = generate_ids(loaded, prompts, settings=sampled, batch_size=config["per_device_eval_batch_size"])
    completions = [[{"role": "assistant", "content": tokenizer.decode(r, skip_special_tokens=True)}] for r in replies]
    means = []
    for function in functions:
        scores = [s for s in function(prompts=[r["prompt"] for r in rows], completions=completions,
                                      completion_ids=replies) if s is not None]
        means.append(sum(scores) / len(scores) if scores else None)
    return means
