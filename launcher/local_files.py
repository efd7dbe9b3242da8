"""Plan-time checks of model and tokenizer files on this machine: readable before any rank loads them.

Each check returns one message per problem, naming the file and the fix; the caller adds the config key.
Only headers are read (safetensors' own header check, JSON parses), so a 70B checkpoint checks in
milliseconds.
"""

from __future__ import annotations

import json
from pathlib import Path

from llm_launch.launcher.json_errors import json_error_text

SAFETENSORS_INDEX = "model.safetensors.index.json"
REDOWNLOAD = "download or export the model again"


def _json_problem(path: Path, fix: str) -> str | None:
    """A message when path is not a readable JSON file, else None."""
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        return f"{path}: not UTF-8 (byte {exc.start + 1}); {fix}"
    except json.JSONDecodeError as exc:
        return f"{path}: not valid JSON ({json_error_text(exc, with_line=True)}); {fix}"
    except OSError as exc:
        return f"{path}: cannot be read ({exc.strerror}); {fix}"
    return None


def tokenizer_problems(tokenizer_dir: Path) -> list[str]:
    """tokenizer.json (and tokenizer_config.json, when present) must parse."""
    fix = "download the tokenizer folder again"
    problems = [_json_problem(tokenizer_dir / "tokenizer.json", fix)]
    if (tokenizer_dir / "tokenizer_config.json").is_file():
        problems.append(_json_problem(tokenizer_dir / "tokenizer_config.json", fix))
    return [p for p in problems if p]


def _weight_files(model_dir: Path) -> tuple[list[Path], dict[str, list[str]], list[str]]:
    """(safetensors files, tensor names the index expects in each, problems) of a Hugging Face folder."""
    index_path = model_dir / SAFETENSORS_INDEX
    if not index_path.is_file():
        return sorted(model_dir.glob("*.safetensors")), {}, []
    problem = _json_problem(index_path, REDOWNLOAD)
    if problem:
        return [], {}, [problem]
    weight_map = json.loads(index_path.read_text(encoding="utf-8")).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        return [], {}, [f"{index_path}: has no weight_map; {REDOWNLOAD}"]
    expected: dict[str, list[str]] = {}
    for tensor, file in weight_map.items():
        expected.setdefault(str(file), []).append(str(tensor))
    return [model_dir / file for file in sorted(expected)], expected, []


def pretrained_problems(model_dir: Path) -> list[str]:
    """Every safetensors file of a Hugging Face model folder has an intact header and covers its tensors."""
    from safetensors import SafetensorError, safe_open

    files, expected, problems = _weight_files(model_dir)
    if problems:
        return problems
    if not files and not any(model_dir.glob("*.bin")):
        return [f"{model_dir} holds no weights (*.safetensors); point model.pretrained_path at a Hugging Face "
                "checkpoint folder"]
    for path in files:
        if not path.is_file():
            problems.append(f"{path}: missing, but {SAFETENSORS_INDEX} lists it; {REDOWNLOAD}")
            continue
        try:
            with safe_open(str(path), framework="pt") as weights:
                names = set(weights.keys())
        except (SafetensorError, OSError) as exc:
            problems.append(f"{path}: not a readable safetensors file ({exc}; {path.stat().st_size} bytes): truncated "
                            f"or damaged; {REDOWNLOAD}")
            continue
        absent = sorted(set(expected.get(path.name, [])) - names)
        if absent:
            problems.append(f"{path}: lacks {len(absent)} tensors {SAFETENSORS_INDEX} places in it (first: "
                            f"{absent[0]}); {REDOWNLOAD}")
    return problems


def nxd_checkpoint_problems(model_dir: Path, job) -> list[str]:
    """A Trainium job's model.pretrained_path: NxD shards (model/*.pt, as llm-launch-convert hf-to-nxd writes them)
    in the job's layout (nxd_layout.json: tp, pp, KV replication, trn1/trn2), since NxD loads shards as they are."""
    from llm_launch.launcher.nxd_layout import layout_differences, layout_record

    convert = ("run llm-launch-convert hf-to-nxd -i <Hugging Face folder> -o <dir> --job <job.yaml> and point "
               "model.pretrained_path at <dir>")
    if not any((model_dir / "model").glob("*.pt")):
        return [f"{model_dir} holds no NxD shards (model/*.pt); the Trainium backend starts from an NxD checkpoint: "
                f"{convert}"]
    record = model_dir / "nxd_layout.json"
    if not record.is_file():
        return []
    problem = _json_problem(record, convert)
    if problem:
        return [problem]
    differ = layout_differences(json.loads(record.read_text(encoding="utf-8")), layout_record(job))
    return [f"{model_dir} holds NxD shards with {differ}; {convert}"] if differ else []
