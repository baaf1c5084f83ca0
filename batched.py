"""Lockstep students stepped as one batched computation (engine.Recipe.batched, --batched).

K students of one architecture train on the same batch. Instead of K forward/backward passes, their
parameters and buffers are stacked along a new first dimension (torch.func.stack_module_state), the
forward pass is vmapped over the stack (torch.func.functional_call), and one optimizer updates the
stacks. BatchNorm keeps one set of running statistics per student: its buffers are stacked too, and
its in-place updates under vmap write each student's own slice. Every student's model keeps
parameters that are views of its slice, so evaluation and checkpoints see the current weights, and a
checkpoint holds the student's own optimizer state: a batched run resumes as a serial one and back.

On a GPU one small student leaves most of the device idle, and this fills it; on a CPU it is slower
(bench.py measures both). Same update rule as stepping the students one by one; the floats differ
only by rounding (a grouped convolution sums in another order).
"""

import torch
from torch.func import functional_call, stack_module_state, vmap

from models import model_input


def can_batch(members, recipe):
    """'' if the members can be stepped as one computation, else the reason why not."""
    if len(members) < 2:
        return "only one student"
    if recipe.compile:
        return "--compile"
    if len({type(m.model) for m in members}) > 1 or len({tuple(m.model.state_dict()) for m in members}) > 1:
        return "the students differ in architecture"
    if any(m.objective_module is not None for m in members):
        return "a student's objective has learnable parameters (CTKD)"
    if len({m.position for m in members}) > 1:
        return "the students resumed at different steps"
    if len({m.norm for m in members}) > 1:
        return "the students normalise their inputs differently"
    return ""


class BatchedStudents:
    """The members' models as stacked tensors, with one optimizer and one vmapped forward."""

    def __init__(self, members, make_optimizer):
        self.members, models = members, [m.model for m in members]
        self.params, self.buffers = stack_module_state(models)  # copies: (K, ...) each, params require grad
        self.base = models[0]
        for k, model in enumerate(models):  # each model now reads its slice of the stacks
            for name, p in model.named_parameters():
                p.data = self.params[name][k]
            for name, b in model.named_buffers():
                b.data = self.buffers[name][k]
        self.optimizer = make_optimizer(list(self.params.values()))
        self._load_member_states()
        for k, m in enumerate(members):
            m.optimizer = MemberOptimizer(self, k, m.optimizer)

    def _load_member_states(self):
        """Stack the members' own optimizer states (after a resume) into the shared optimizer."""
        states = [m.optimizer.state_dict()["state"] for m in self.members]
        if not states[0]:
            return
        for i, p in enumerate(self.params.values()):
            per = [s[i] for s in states]
            self.optimizer.state[p] = {
                key: (
                    per[0][key].clone() if per[0][key].dim() == 0 else torch.stack([q[key] for q in per]).to(p.device)
                )
                for key in per[0]
            }

    def forward(self, x, norm, channels_last):
        """(K, B, classes) logits of every student on the same input batch."""
        x = model_input(x, *norm, channels_last)

        def one(params, buffers):
            return functional_call(self.base, (params, buffers), (x,))

        return vmap(one, randomness="error")(self.params, self.buffers)

    def step(self, active, xs, batch, t_logits, epoch, step, lr, recipe):
        """One optimizer step of every member as one computation (engine.train_step's batched twin); a failed
        member's slice keeps stepping, unrecorded."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(recipe.device.type, dtype=torch.bfloat16, enabled=recipe.amp):
            logits = self.forward(xs[0], self.members[0].norm, recipe.channels_last)
            losses = [m.objective(logits[k], batch, t_logits, epoch + 1, step) for k, m in enumerate(self.members)]
        self.optimizer.zero_grad(set_to_none=True)
        torch.stack(losses).sum().backward()  # each student's loss depends on its own slice only
        if recipe.clip > 0:
            self.clip_(recipe.clip)
        self.optimizer.step()
        for m, loss in zip(self.members, losses):
            if m in active:
                m.loss_sum += loss.detach().float()
                m.loss_n += 1
                m.position += 1

    @torch.no_grad()
    def clip_(self, max_norm):
        """kd.per_layer_clip_ for every student at once: each parameter tensor of each student separately."""
        for p in self.params.values():
            if p.grad is None:
                continue
            norms = torch.linalg.vector_norm(p.grad.flatten(1), dim=1)
            scale = (max_norm / (norms + 1e-6)).clamp_max(1.0)
            p.grad.mul_(scale.view(-1, *[1] * (p.grad.dim() - 1)))


class MemberOptimizer:
    """One member's view of the shared optimizer: its state_dict is what its own optimizer would hold."""

    def __init__(self, batched, k, own):
        self.batched, self.k, self.own = batched, k, own

    @property
    def param_groups(self):
        return self.batched.optimizer.param_groups

    def state_dict(self):
        own_params = list(self.batched.members[self.k].model.parameters())
        self.own.state.clear()
        for p, stacked in zip(own_params, self.batched.params.values()):
            state = self.batched.optimizer.state.get(stacked, {})
            self.own.state[p] = {key: (v.clone() if v.dim() == 0 else v[self.k].clone()) for key, v in state.items()}
        for group in self.own.param_groups:
            group["lr"] = self.batched.optimizer.param_groups[0]["lr"]
        return self.own.state_dict()
