"""Stage 3, second choice: RLOO (`trl.RLOOTrainer`) against the reward model.

RLOO samples `num_generations` replies per prompt and uses the others' mean reward as each one's
baseline, so it needs no value model. Its trainer is a Hugging Face Trainer, so checkpoints and
`resume_from_checkpoint` work as in SFT. The reward model scores the chat (prompt plus reply)
through the policy's own tokenizer and chat template, as in reward training.
"""

from datasets import Dataset
from transformers import AutoModelForCausalLM
from trl import RLOOConfig, RLOOTrainer

from . import evaluate
from .common import Job, ProgressCallback, adapter_config, publish, save_for, start_work, training_arguments
from .data import stage_rows
from .policy import policy_tokenizer, scored_model


def train(job: Job) -> None:
    c = job.config
    args = training_arguments(
        job, RLOOConfig, num_generations=c["num_generations"], max_completion_length=c["response_length"],
        beta=c["kl_coef"], temperature=c["temperature"], num_iterations=c["num_iterations"], log_completions=False,
        # For the reference it loads (TRL's own default is float32).
        model_init_kwargs={"attn_implementation": c["attn_implementation"], "dtype": job.load_dtype},
    )
    main = args.process_index == 0
    checkpoint = start_work(job, args)
    tokenizer = policy_tokenizer(job)
    policy = AutoModelForCausalLM.from_pretrained(job.base_model, attn_implementation=c["attn_implementation"],
                                                  dtype=job.load_dtype)
    # With an adapter TRL loads no reference: it is the policy with its adapter switched off.
    lora = adapter_config(job, policy, tokenizer)
    # RLOO cannot cut a prompt to fit: leave out prompts too long for a reply in the model's context.
    room = policy.config.max_position_embeddings - c["response_length"]
    rows = stage_rows("rloo", job.train_path)
    fitting = [r for r in rows if len(tokenizer.apply_chat_template(
        r["prompt"], tokenize=True, add_generation_prompt=True, return_dict=False)) <= room]
    per_batch = c["per_device_train_batch_size"] * c["gradient_accumulation_steps"] * args.world_size
    if len(fitting) < max(1, per_batch // c["num_generations"]):
        raise ValueError(f"only {len(fitting)} of {len(rows)} prompts leave room for a {c['response_length']}-token "
                         "reply in the model's context: fewer than one batch")
    callback = ProgressCallback(job, start_fields={"prompts_too_long": len(rows) - len(fitting),
                                                   "adapter": job.adapter})
    trainer = RLOOTrainer(
        model=policy,
        reward_funcs=scored_model(job.reward_model, pad_token_id=tokenizer.pad_token_id,
                                  attn_implementation=c["attn_implementation"]),
        args=args, train_dataset=Dataset.from_list(fitting), processing_class=tokenizer,
        reward_processing_classes=tokenizer, callbacks=[callback], peft_config=lora,
    )
    trainer.train(resume_from_checkpoint=checkpoint)
    publish(job, main=main, wait=trainer.accelerator.wait_for_everyone,
            save=save_for(job, trainer, model_class=AutoModelForCausalLM),
            evaluate=lambda folder: evaluate.evaluate_policy(
                str(folder), job.eval_path, c, reference_dir=job.base_model, reward_dir=job.reward_model,
                previous_dir=job.previous_policy, seed=job.seed),
            train_metrics={**callback.summary, "prompts_too_long": len(rows) - len(fitting)})
