"""watch() on models with many parameter tensors: a few watched parameters stand for the rest, the
cost per step does not grow with the model, and every finding of a small model is still found."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from looplint.runtime import watch
from looplint.runtime.grads import SAMPLE_SIZE, _sample
from looplint.runtime.session import RuntimeReport, Session

torch.set_num_threads(1)


def deep_model(layers: int = 30) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(*[nn.Linear(4, 4) for _ in range(layers)])  # 2 tensors per layer


def loss_of(model: nn.Module) -> torch.Tensor:
    x = torch.randn(3, 4)
    return nn.functional.mse_loss(model(x), x)


def codes(report) -> list[str]:
    return sorted(f.code for f in report.findings if f.code < "LL506")


def test_the_watched_set_does_not_grow_with_the_model():
    sizes = {}
    for layers in (5, 500):
        model = deep_model(layers)
        session = Session(observers=[])
        session.start()
        try:
            optimizer = torch.optim.AdamW(model.parameters())
            for _ in range(3):
                optimizer.zero_grad()
                loss_of(model).backward()
                optimizer.step()
        finally:
            session.stop()
        session.finish(RuntimeReport())
        sizes[layers] = len(session.grads._watched)
    assert sizes == {5: SAMPLE_SIZE, 500: SAMPLE_SIZE}


def test_the_sample_spans_the_parameter_list():
    params = list(deep_model(30).parameters())
    sample = _sample(params)
    assert len(sample) == SAMPLE_SIZE
    assert sample[0] is params[0] and sample[-1] is params[-1]
    frozen = deep_model(30)
    for p in list(frozen.parameters())[:50]:
        p.requires_grad_(False)
    assert all(p.requires_grad for p in _sample(list(frozen.parameters())))


def test_missing_zero_grad_reports_every_parameter_of_a_large_model():
    model = deep_model(30)
    with watch() as report:
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        for _ in range(5):
            loss_of(model).backward()
            optimizer.step()
    (finding,) = report.findings
    assert finding.code == "LL101"
    assert "gradients of 60 parameters accumulated across 5 backward passes" in finding.message
    assert finding.details["steps_affected"] == 4


def test_stepping_twice_on_a_large_model():
    model = deep_model(30)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    with watch() as report:
        for _ in range(3):
            optimizer.zero_grad()
            loss_of(model).backward()
            optimizer.step()
            optimizer.step()
    (finding,) = report.findings
    assert (
        finding.code == "LL101" and "applied the gradients of 60 parameters a second time" in finding.message
    )


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad_between_backward_and_step_on_a_large_model_even_once(set_to_none):
    model = deep_model(30)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    with watch() as report:
        for step in range(4):
            optimizer.zero_grad()
            loss_of(model).backward()
            if step == 2:
                optimizer.zero_grad(set_to_none=set_to_none)
            optimizer.step()
    (finding,) = report.findings
    assert finding.code == "LL102" and "cleared at" in finding.message


def test_gradients_cleared_only_where_the_sample_looks_are_not_a_step_without_gradients():
    model = deep_model(30)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    watched = _sample(list(model.parameters()))
    with watch() as report:
        for _ in range(4):
            optimizer.zero_grad()
            loss_of(model).backward()
            for param in watched:  # the other 56 parameters keep their gradients
                param.grad = None
            optimizer.step()
    assert codes(report) == []


@pytest.mark.parametrize("style", ["set_to_none", "zeros", "model", "grad_none", "grad_zero_", "at_end"])
def test_every_way_of_clearing_is_silent_on_a_large_model(style):
    model = deep_model(30)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with watch() as report:
        for _ in range(4):
            if style == "set_to_none":
                optimizer.zero_grad(set_to_none=True)
            elif style == "zeros":
                optimizer.zero_grad(set_to_none=False)
            elif style == "model":
                model.zero_grad()
            elif style in ("grad_none", "grad_zero_"):
                for p in model.parameters():
                    if style == "grad_none":
                        p.grad = None
                    elif p.grad is not None:
                        p.grad.zero_()
            loss_of(model).backward()
            optimizer.step()
            if style == "at_end":
                optimizer.zero_grad()
    assert codes(report) == []
    assert report.summary["optimizers"]["AdamW"]["backward_passes_per_step"] == {1: 4}


def test_accumulation_on_a_large_model():
    model = deep_model(30)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    with watch(accumulation_steps=4) as good:
        for i in range(12):
            (loss_of(model) / 4).backward()
            if (i + 1) % 4 == 0:
                optimizer.step()
                optimizer.zero_grad()
    assert codes(good) == []
    with watch(accumulation_steps=4) as bad:
        for i in range(12):
            loss_of(model).backward()
            if (i + 1) % 3 == 0:
                optimizer.step()
                optimizer.zero_grad()
    assert codes(bad) == ["LL101"]
    assert "used gradients of 3 backward passes, expected accumulation_steps=4" in bad.findings[0].message


def test_heads_used_in_turn_under_accumulation_are_silent():
    """Each micro-batch trains one head; the shared trunk gets every pass. The parameters watched
    first are all in the heads, which got fewer passes: only the whole set can say."""
    torch.manual_seed(0)
    head_a = nn.Sequential(*[nn.Linear(4, 4) for _ in range(10)])
    trunk = nn.Linear(4, 4)
    head_b = nn.Sequential(*[nn.Linear(4, 4) for _ in range(10)])
    params = [*head_a.parameters(), *trunk.parameters(), *head_b.parameters()]
    assert not {id(p) for p in _sample(params)} & {id(p) for p in trunk.parameters()}
    optimizer = torch.optim.SGD(params, lr=1e-3)
    with watch(accumulation_steps=2) as report:
        for i in range(8):
            x = trunk(torch.randn(3, 4))
            head = head_a if i % 2 == 0 else head_b
            (nn.functional.mse_loss(head(x), x) / 2).backward()
            if (i + 1) % 2 == 0:
                optimizer.step()
                optimizer.zero_grad()
    assert codes(report) == []


def test_gan_with_large_networks():
    def run(clear_d: bool):
        torch.manual_seed(0)
        generator, discriminator = deep_model(10), deep_model(12)
        opt_g = torch.optim.Adam(generator.parameters(), lr=1e-4)
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-4)
        with watch() as report:
            for _ in range(4):
                if clear_d:
                    opt_d.zero_grad()
                fake = generator(torch.randn(8, 4))
                discriminator(torch.randn(8, 4)).mean().backward()
                (-discriminator(fake.detach()).mean()).backward()
                opt_d.step()
                opt_g.zero_grad()
                discriminator(fake).mean().backward()  # also fills D's grads
                opt_g.step()
        return report

    assert codes(run(clear_d=True)) == []
    assert codes(run(clear_d=False)) == ["LL101"]


def test_frozen_backbone_handed_to_the_optimizer_is_silent_and_bugs_still_show():
    def run(clear: bool):
        model = deep_model(30)
        for p in model[:25].parameters():
            p.requires_grad_(False)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        with watch() as report:
            for _ in range(4):
                if clear:
                    optimizer.zero_grad()
                loss_of(model).backward()
                optimizer.step()
        return report

    assert codes(run(clear=True)) == []
    (finding,) = run(clear=False).findings
    assert "gradients of 10 parameters accumulated across 4 backward passes" in finding.message


def test_optimizer_created_before_watch_on_a_large_model():
    model = deep_model(30)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    with watch(accumulation_steps=2) as report:
        for i in range(6):
            (loss_of(model) / 2).backward()
            if i % 2:
                optimizer.step()
                optimizer.zero_grad()
    assert codes(report) == []
    assert report.summary["optimizers"]["SGD"]["backward_passes_per_step"] == {2: 3}


@pytest.mark.parametrize("clear", ["optimizer", "model"])
def test_accumulation_defeated_by_clearing_every_micro_batch_on_a_large_model(clear):
    model = deep_model(30)
    with watch() as report:
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        for i in range(48):
            if clear == "optimizer":
                optimizer.zero_grad()
            else:
                model.zero_grad()
            (loss_of(model) / 4).backward()
            if (i + 1) % 4 == 0:
                optimizer.step()
    (finding,) = report.findings
    assert finding.code == "LL102"
    assert finding.message.startswith(f"`{clear}.zero_grad()` defeats the gradient accumulation")
    details = finding.details
    assert (details["backward_passes"], details["steps"], details["thrown_away"]) == (48, 12, 36)


def test_a_normal_loop_keeps_no_discard_and_looks_up_no_step_site():
    model = deep_model(30)
    session = Session(observers=[])
    session.start()
    try:
        optimizer = torch.optim.AdamW(model.parameters())
        for i in range(12):
            (loss_of(model) / 4).backward()
            if (i + 1) % 4 == 0:
                optimizer.step()
                optimizer.zero_grad()
    finally:
        session.stop()
    (state,) = session.grads.all_optimizers
    assert state.discards == [] and not state.step_sites
    assert state.used_passes == 12


def test_lbfgs_closures_that_clear_are_not_defeated_accumulation():
    model = deep_model(30)
    optimizer = torch.optim.LBFGS(model.parameters(), lr=0.1, max_iter=5)
    x = torch.randn(3, 4)

    def closure():
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), x)
        loss.backward()
        return loss

    with watch() as report:
        for _ in range(10):
            optimizer.step(closure)
    assert codes(report) == []
    assert report.summary["backward_passes"] > 20  # several closure calls per step
