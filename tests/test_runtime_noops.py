"""watch() on the silent no-ops of real training code: each check fires on its bug and stays silent
on the code that looks like it but is right (or plausibly on purpose)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from looplint.runtime import watch

torch.set_num_threads(1)


def codes(report) -> list[str]:
    return sorted(f.code for f in report.findings if f.code < "LL506")


def data() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(8, 4)
    return x, x.sum(1, keepdim=True)


def regressor() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 1))


# -- LL105 -------------------------------------------------------------------------------------
def epochs(model: nn.Module, *, retrain: bool, no_grad: bool = True, epochs: int = 3) -> list[str]:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    with watch() as report:
        for _ in range(epochs):
            if retrain:
                model.train()
            for _ in range(3):
                optimizer.zero_grad()
                x, y = data()
                nn.functional.mse_loss(model(x), y).backward()
                optimizer.step()
            model.eval()
            with torch.set_grad_enabled(not no_grad):
                model(data()[0])
    return codes(report)


def test_training_after_validation_without_train_is_reported_at_the_eval_call():
    assert epochs(regressor(), retrain=False) == ["LL105"]
    assert epochs(regressor(), retrain=True) == []


def test_validation_without_no_grad_still_counts():
    assert epochs(regressor(), retrain=False, no_grad=False) == ["LL105"]


def test_a_model_trained_in_eval_mode_from_the_start_is_left_alone():
    model = regressor().eval()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    with watch() as report:
        model.eval()  # before any backward pass, and no validation follows
        for _ in range(4):
            optimizer.zero_grad()
            x, y = data()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
    assert codes(report) == []


def test_batch_norm_frozen_by_a_train_override_is_on_purpose():
    class FrozenStats(nn.Sequential):
        def train(self, mode: bool = True):
            super().train(mode)
            for layer in self.modules():
                if isinstance(layer, nn.BatchNorm1d):
                    layer.eval()  # statistics frozen, affine parameters still trained
            return self

    torch.manual_seed(0)
    model = FrozenStats(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 1))
    assert epochs(model, retrain=True) == []


def test_the_message_names_the_module_its_layers_and_the_step():
    model = regressor()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    with watch() as report:
        for epoch in range(2):
            for _ in range(3):
                optimizer.zero_grad()
                x, y = data()
                nn.functional.mse_loss(model(x), y).backward()
                optimizer.step()
            model.eval()  # LINE-EVAL
            with torch.no_grad():
                model(data()[0])
    (finding,) = report.findings
    assert "`model.eval()` switched `model.1` (BatchNorm1d), `model.3` (Dropout)" in finding.message
    assert "after optimizer step 3" in finding.message and "3 backward passes" in finding.message
    assert "LINE-EVAL" in Path(__file__).read_text().splitlines()[finding.line - 1]


# -- LL103 / LL104 -------------------------------------------------------------------------------
def test_clip_between_micro_batches_is_before_the_last_backward():
    model = regressor()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    with watch() as report:
        for _ in range(3):
            optimizer.zero_grad()
            for micro in range(2):
                x, y = data()
                (nn.functional.mse_loss(model(x), y) / 2).backward()
                if micro == 0:
                    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
    assert codes(report) == ["LL103"]


def test_gan_clipping_each_network_after_its_backward_is_silent():
    torch.manual_seed(0)
    generator, discriminator = nn.Linear(4, 8), nn.Linear(8, 1)
    opt_g = torch.optim.Adam(generator.parameters(), lr=1e-4)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-4)
    with watch() as report:
        for _ in range(4):
            opt_d.zero_grad()
            fake = generator(torch.randn(8, 4))
            (discriminator(fake.detach()).mean() - discriminator(torch.randn(8, 8)).mean()).backward()
            nn.utils.clip_grad_value_(discriminator.parameters(), 0.01)
            opt_d.step()
            opt_g.zero_grad()
            (-discriminator(fake).mean()).backward()  # also fills D's gradients, after D's clip
            nn.utils.clip_grad_norm_(generator.parameters(), 1.0)
            opt_g.step()
    assert codes(report) == []


@pytest.mark.parametrize("enabled", [True, False])
def test_clip_without_unscale_only_when_the_scaler_scales(enabled):
    model = regressor()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", enabled=enabled)
    with watch() as report:
        for _ in range(3):
            optimizer.zero_grad()
            x, y = data()
            scaler.scale(nn.functional.mse_loss(model(x), y)).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
    assert codes(report) == (["LL104"] if enabled else [])


# -- LL404 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda params: torch.optim.SGD(params, lr=1e-2, momentum=0.9), ["LL404"]),
        (lambda params: torch.optim.SGD(params, lr=1e-2), []),  # no state to lose
    ],
)
def test_optimizer_rebuilt_every_step(build, expected):
    model = regressor()
    with watch() as report:
        for _ in range(4):
            optimizer = build(model.parameters())
            optimizer.zero_grad()
            x, y = data()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
    assert codes(report) == expected


def test_optimizer_rebuilt_every_epoch_is_not_every_step():
    model = regressor()
    with watch() as report:
        for _ in range(4):
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)  # a fresh start per stage
            for _ in range(3):
                optimizer.zero_grad()
                x, y = data()
                nn.functional.mse_loss(model(x), y).backward()
                optimizer.step()
    assert codes(report) == []
    assert report.summary["optimizers"]["Adam"]["instances"] == 4


# -- LL405 ---------------------------------------------------------------------------------------
def test_frozen_optimizer_on_a_large_model_reports_every_parameter():
    torch.manual_seed(0)
    backbone = nn.Sequential(*[nn.Linear(4, 4) for _ in range(20)])
    head = nn.Linear(4, 1)
    backbone_optimizer = torch.optim.AdamW(backbone.parameters())
    head_optimizer = torch.optim.AdamW(head.parameters())
    backbone.requires_grad_(False)
    with watch() as report:
        for _ in range(4):
            head_optimizer.zero_grad()
            x, y = data()
            nn.functional.mse_loss(head(backbone(x)), y).backward()
            head_optimizer.step()
            backbone_optimizer.step()
    (finding,) = report.findings
    assert finding.code == "LL405"
    assert "ran 4 times and none of the 40 parameters" in finding.message
    assert "all 40 have requires_grad=False" in finding.message


def test_an_optimizer_that_steps_before_its_first_backward_is_not_frozen():
    model = regressor()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    with watch() as report:
        optimizer.step()  # nothing yet: a warm-up quirk, not a frozen model
        for _ in range(4):
            optimizer.zero_grad()
            x, y = data()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
    assert codes(report) == []


def test_gradients_cleared_before_every_step_are_ll102_not_frozen():
    model = regressor()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    with watch() as report:
        for _ in range(4):
            x, y = data()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.zero_grad()
            optimizer.step()
    assert codes(report) == ["LL102"]


# -- LL508 ---------------------------------------------------------------------------------------
def encoder_decoder() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), nn.Sequential(
        nn.Linear(2, 8), nn.Linear(8, 4)
    )


def test_parameters_without_optimizer_are_named():
    encoder, decoder = encoder_decoder()
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-3)
    with watch() as report:
        for _ in range(6):
            optimizer.zero_grad()
            x = torch.randn(8, 4)
            nn.functional.mse_loss(decoder(encoder(x)), x).backward()
            optimizer.step()
    (finding,) = report.findings
    assert finding.code == "LL508"
    assert "4 parameter tensors (60 values: `decoder.0.weight`, `decoder.0.bias`" in finding.message


def test_parameters_updated_by_hand_are_not_left_out():
    encoder, decoder = encoder_decoder()
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-3)
    with watch() as report:
        for _ in range(6):
            optimizer.zero_grad()
            decoder.zero_grad()
            x = torch.randn(8, 4)
            nn.functional.mse_loss(decoder(encoder(x)), x).backward()
            optimizer.step()
            with torch.no_grad():
                for param in decoder.parameters():
                    param -= 1e-3 * param.grad  # a hand-written SGD step
    assert codes(report) == []


def test_no_optimizer_at_all_is_a_hand_written_loop():
    encoder, decoder = encoder_decoder()
    with watch() as report:
        for _ in range(6):
            x = torch.randn(8, 4)
            nn.functional.mse_loss(decoder(encoder(x)), x).backward()
            with torch.no_grad():
                for param in [*encoder.parameters(), *decoder.parameters()]:
                    param -= 1e-3 * param.grad
                    param.grad = None
    assert codes(report) == []


def test_one_helper_building_the_optimizers_of_two_networks_is_not_a_rebuild():
    torch.manual_seed(0)
    generator, discriminator = nn.Linear(4, 8), nn.Linear(8, 1)

    def build(module: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.Adam(module.parameters(), lr=1e-4)

    with watch() as report:
        opt_g, opt_d = build(generator), build(discriminator)
        for _ in range(4):
            opt_d.zero_grad()
            fake = generator(torch.randn(8, 4))
            (discriminator(fake.detach()).mean() - discriminator(torch.randn(8, 8)).mean()).backward()
            opt_d.step()
            opt_g.zero_grad()
            (-discriminator(fake).mean()).backward()
            opt_g.step()
    assert codes(report) == []
    assert [entry["instances"] for entry in report.summary["optimizers"].values()] == [1, 1]
