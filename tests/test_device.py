"""fda.model.device: the one --device resolver (cpu, cuda, cuda:N, mps, auto) and its one-line errors."""

import ast
import pathlib

import pytest
import torch

from fda.errors import ConfigError, EnvError
from fda.model import device as device_mod
from fda.model.device import resolve_device

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "fda"


@pytest.fixture
def gpus(monkeypatch):
    """Pretend this machine has ``n`` CUDA devices (0: none) and no MPS."""

    def set_count(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(device_mod, "_mps_available", lambda: False)

    return set_count


def test_cpu_and_auto_without_accelerators(gpus):
    gpus(0)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == resolve_device(None) == resolve_device() == torch.device("cpu")


def test_auto_prefers_cuda_then_mps(gpus, monkeypatch):
    gpus(2)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("auto", local_rank=3) == torch.device("cuda", 1)  # each torchrun process its own GPU
    gpus(0)
    monkeypatch.setattr(device_mod, "_mps_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")


def test_cuda_strings(gpus):
    gpus(2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cuda:0", local_rank=1) == torch.device("cuda", 0)  # an explicit index wins
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda", local_rank=2) == torch.device("cuda", 0)


@pytest.mark.parametrize("name,count,match", [
    ("cuda", 0, r"^--device cuda: no CUDA device is available; use --device cpu or auto$"),
    ("cuda:1", 0, r"^--device cuda:1: no CUDA device is available"),
    ("cuda:2", 2, r"^--device cuda:2: this machine has 2 CUDA device\(s\) \(cuda:0\.\.cuda:1\)"),
    ("mps", 0, r"^--device mps: MPS is not available; use --device cpu or auto$"),
])
def test_a_device_that_is_not_there_is_a_one_line_env_error(gpus, name, count, match):
    gpus(count)
    with pytest.raises(EnvError, match=match) as err:
        resolve_device(name)
    assert "\n" not in str(err.value) and err.value.exit_code == 4


def test_a_name_torch_does_not_know_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^--device 'gpu0' is not a device: use auto, cpu, cuda, cuda:N or mps$"):
        resolve_device("gpu0")


def test_every_command_uses_the_one_resolver():
    """No module but fda.model.device decides what a --device value means (train, eval, embed, search, the lab)."""
    own = SRC / "model" / "device.py"
    found = []
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defined = [n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
                   and ("device" in n.name.lower() and n.name.startswith(("resolve", "_device", "pick", "choose")))]
        if defined and path != own:
            found.append(f"{path.relative_to(SRC)}: {defined}")
    assert not found, found
    users = {str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
             if "from fda.model.device import resolve_device" in p.read_text(encoding="utf-8")}
    assert {"train/run.py", "eval/retrieval.py", "eval/embeddings.py", "lab/demo.py", "lab/motion_bench.py"} <= users


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_real_gpu():
    count = torch.cuda.device_count()
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device(f"cuda:{count - 1}") == torch.device("cuda", count - 1)
    with pytest.raises(EnvError, match=f"this machine has {count} CUDA device"):
        resolve_device(f"cuda:{count}")
    assert torch.zeros(2, device=resolve_device("cuda")).sum().item() == 0
