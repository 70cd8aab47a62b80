"""modjax's mixed-precision train step for the benchmarks (no PyTorch needed to import it)."""

import jax
import jax.numpy as jnp
import optax


def bf16_step(model, tx, objective):
    """modjax mixed precision: bf16 params and inputs inside the loss, float32 master weights."""

    def step(state, batch):
        def loss_fn(params):
            p16 = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
            (logits, acts), updates = model.apply(
                {"params": p16, "batch_stats": state.batch_stats},
                batch["image"].astype(jnp.bfloat16),
                train=True,
                rngs={"dropout": jax.random.fold_in(state.rng, state.step)},
                mutable=["batch_stats"],
            )
            loss, _ = objective(logits.astype(jnp.float32), acts, batch["label"])
            return loss, updates.get("batch_stats", {})

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new = state._replace(
            step=state.step + 1, params=params, batch_stats=stats, opt_state=opt_state
        )
        return new, {"loss": loss}

    return jax.jit(step, donate_argnums=0)


__all__ = ["bf16_step"]
