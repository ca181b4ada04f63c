"""README.md's claims test themselves.

- Its Python blocks run (`test_python_blocks_run`): every ```python block, in README order,
  in one child process on PyTorch (the quick start's backend line set to its "torch"
  option: eager, no compiling of tiny models), sharing one namespace as a reader's session
  does (the quick start's `keras`, `images` and `mae_digits.keras` serve later blocks);
  the blocks that need several devices (`OWN_BACKEND`) run in a second process, on JAX
  with 8 logical CPU devices. The README shows real settings; the test shrinks them by
  rewriting the text (`REWRITES`: one training step per `fit`, 16 px test presets), hands
  the blocks what they leave to the reader (`READER`: an image folder, arrays, a
  DataLoader, videos, a run folder) and checks what their comments and the prose beside
  them state (`CHECKS`). A block right after `<!-- readme-test: skip (REASON) -->` does
  not run; `SKIPPED` lists those blocks and reasons.
- Every `keras-mim` command that README.md and docs/*.md show names a subcommand and
  options that exist, and the README's bash lines parse (`test_cli_*`).
- Every number in the README's prose has a source: tests/test_readme_methods.py.
"""

import contextlib
import io
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

pytestmark = pytest.mark.backend_independent

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```(\S*)\s*$")
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*\((.+)\)\s*-->")
GENERATED = re.compile(r"<!-- methods-table:begin -->.*?<!-- methods-table:end -->", re.DOTALL)


# ------------------------------------------------------------------------------ markdown
def fenced_blocks(text):
    """`(language, first code line (1-based), code, skip reason or None)` of each fenced block."""
    lines, blocks, i = text.splitlines(), [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            before = next((line for line in reversed(lines[:i]) if line.strip()), "")
            skip = SKIP.search(before)
            blocks.append((match.group(1), i + 2, "\n".join(lines[i + 1:end]) + "\n", skip and skip.group(1)))
            i = end
        i += 1
    return blocks


def paragraphs(text):
    """The prose paragraphs of a Markdown text: fenced blocks, the generated methods table
    and HTML comments removed, split at blank lines (a table is one paragraph)."""
    text = re.sub(r"<!--.*?-->", "", GENERATED.sub("", text), flags=re.DOTALL)
    kept, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line) or (fenced and line.startswith("```")):
            fenced = not fenced
            kept.append("")
        elif not fenced:
            kept.append(line)
    return [p for p in re.split(r"\n\s*\n", "\n".join(kept)) if p.strip()]


def code_spans(paragraph):
    return re.findall(r"`([^`]+)`", paragraph)


# ------------------------------------------------------------------ 1. the Python blocks
# (pattern, replacement), applied in order to every block: what keeps the blocks cheap.
REWRITES = [
    (r'(os.environ\["KERAS_BACKEND"\] = )"jax"', r'\1"torch"'),  # eager torch: no compiling tiny models
    (r"epochs=\d+", "epochs=1, steps_per_epoch=1"),  # one training step per fit
    (r"spoken_digits\(640\)", "spoken_digits(16)"),  # 16 clips synthesised, not 640
    (r"shape_clouds\(600, num_points=512\)", "shape_clouds(16, num_points=512)"),  # 16 clouds, not 600
    (r'"mae_vit_base_patch16", target="hog"', '"mae_vit_tiny_patch16", target="hog"'),  # HOG's 8 px cells
    (r"(\w+)_vit_(small|base|large|huge)_patch\d+", r"\1_vit_test"),  # ViT-S/B/L/H -> the 16 px test preset
    (r"image_size=224", "image_size=16"),  # 224 px -> the test presets' 16 px
    (r"knn_evaluate\(mae, x_train, y_train, x_test, y_test\)",  # features of 320 digits, not 1797
     "knn_evaluate(mae, x_train[:256], y_train[:256], x_test[:64], y_test[:64])"),
]

# Blocks that run in a process of their own, on another backend than torch: {needle: backend}.
OWN_BACKEND = {"distribution_scope(": "jax"}  # several (8 logical CPU) devices: JAX only

# What a block leaves to the reader, set up before the first block that names it.
READER = {
    'image_dataset("data/xrays"': """
import os, numpy as np, torch
from PIL import Image
rng = np.random.default_rng(0)
os.makedirs("data/xrays/ward_a", exist_ok=True)
for i in range(4):  # grayscale scans of another size, one corrupt file
    Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8)).save(f"data/xrays/ward_a/{i}.png")
open("data/xrays/broken.png", "wb").write(b"not a png")
images_uint8 = rng.integers(0, 256, (8, 20, 24, 3), dtype=np.uint8)
torch_loader = torch.utils.data.DataLoader(torch.rand(8, 3, 20, 24), batch_size=4)
""",
    'clip_dataset("my_videos/"': """
os.makedirs("my_videos", exist_ok=True)
frames = [Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)) for _ in range(64)]
frames[0].save("my_videos/a.gif", save_all=True, append_images=frames[1:])
""",
    "view_dataset(images": """
images = rng.random((64, 16, 16, 3), dtype=np.float32)  # the reader's own RGB images from here on
""",
    'load_model("runs/pretrain-.../model.keras")': """
import shutil
os.makedirs("runs/pretrain-...", exist_ok=True)  # a keras-mim pretrain run folder
shutil.copy("mae_digits.keras", "runs/pretrain-.../model.keras")
""",
    "keras.applications.ResNet50(weights=None": """
import numpy as np
images_64px = np.random.default_rng(0).random((8, 64, 64, 3), dtype=np.float32)  # the reader's 64 px images
""",
    "distribution_scope(": """
import keras, keras_mim, numpy as np
images = np.random.default_rng(0).random((64, 16, 16, 3), dtype=np.float32)  # the reader's images
""",
}

# What a block's comments and the prose beside it state, checked after it ran.
CHECKS = {
    'load_sample_images("digits"': """
assert images.shape == (1797, 16, 16, 1) and images.dtype == "float32"
assert 0 <= images.min() and images.max() <= 1
assert tuple(features.shape) == (8, 1 + 64, 64)
out = model(images[:2])
assert sorted(out) == ["ids_restore", "mask", "pred"] and tuple(out["pred"].shape) == (2, 64, 2 * 2 * 1)
assert float(keras.ops.sum(out["mask"])) == 2 * 48  # 1 = hidden: 75% of 64 tokens
assert os.path.exists("reconstructions.png") and os.path.exists("mae_digits.keras")
""",
    'image_dataset("data/xrays"': """
folder = image_dataset("data/xrays", image_size=16, batch_size=64)
assert [os.path.basename(p) for p, _ in folder.skipped] == ["broken.png"]
def first_batch(source, **kwargs):
    batch = next(iter(image_dataset(source, batch_size=8, **kwargs)))
    return (batch[0] if isinstance(batch, tuple) else batch).numpy()
batch = first_batch(images_uint8, image_size=16)
assert batch.dtype == "float32" and 0 <= batch.min() and batch.max() <= 1
for bad in (255.0, -1.0):  # 0-255 or [-1, 1] floats raise with the range found
    try:
        image_dataset(np.full((2, 4, 4, 3), bad, np.float32))
        raise AssertionError(f"float pixels at {bad} were taken")
    except ValueError as error:
        assert f"[{bad:g}, {bad:g}]" in str(error), error
os.makedirs("scans16")
Image.fromarray(np.full((4, 4), 65535, np.uint16)).save("scans16/a.png")
assert first_batch("scans16").max() == 1.0  # 16-bit PNG divided by 65535
""",
    "keras.applications.ResNet50(weights=None": """
assert model.encoder.backbone is cnn and os.path.exists("resnet50_spark.keras")
assert tuple(classifier(images_64px[:2]).shape) == (2, 10)
""",
    'HieraMAE.from_preset("hiera_mae_hiera_mini_64")': """
assert [tuple(m.shape) for m in maps] == [(8, 32, 32, 32), (8, 16, 16, 64), (8, 8, 8, 128), (8, 8, 8, 256)]
assert classifier.encoder.q_pool == 3 and model.encoder.q_pool == 2 and model.encoder.grid_shape == (4, 4)
assert tuple(classifier(images_64px[:2]).shape) == (2, 10)
""",
    "moving_shapes(512": """
assert clips.shape == (512, 8, 32, 32, 3)
""",
    "load_labelled_digits": """
assert (len(x_train), len(x_test)) == (1438, 359)
defaults = inspect.signature(knn_evaluate).parameters
assert (defaults["k"].default, defaults["temperature"].default) == (20, 0.07)
""",
}

# Blocks the README marks as not runnable here, with the reason it gives.
SKIPPED = {"keras_mim.load_mae_checkpoint(": "official weights: you download them",
           "keras_mim.to_keras_hub(": "needs the keras-hub extra and a download; tests/keras_hub runs these calls on "
                                      "every backend"}

RUNNER = r"""
import inspect, json, sys, time
namespace = {"__name__": "__main__", "inspect": inspect}
for block in json.load(open(sys.argv[1])):
    start = time.time()
    for part, name in (("setup", "<reader's data>"), ("code", "README.md"), ("check", "<check>")):
        if block[part]:
            source = "\n" * (block["line"] - 1) + block[part] if part == "code" else block[part]
            exec(compile(source, f"{name} of README.md:{block['line']}" if part != "code" else name, "exec"),
                 namespace)
    print(f"README.md:{block['line']} ran in {time.time() - start:.1f} s", flush=True)
"""


def python_blocks():
    """`{backend: [block, ...]}` of the README Python blocks that run (each a dict: line,
    code rewritten, setup, check) and `{line: reason}` of those skipped."""
    groups, skipped, unused = {}, {}, set(READER) | set(CHECKS)
    for language, line, code, skip in fenced_blocks(README.read_text()):
        if language != "python":
            continue
        if skip:
            skipped[line] = skip
            continue
        setup = "".join(s for needle, s in READER.items() if needle in code and needle in unused)
        check = "".join(c for needle, c in CHECKS.items() if needle in code and needle in unused)
        unused -= {needle for needle in unused if needle in code}
        backend = next((b for needle, b in OWN_BACKEND.items() if needle in code), "torch")
        for pattern, replacement in REWRITES:
            code = re.sub(pattern, replacement, code)
        groups.setdefault(backend, []).append(dict(line=line, code=code, setup=setup, check=check))
    assert not unused, f"READER / CHECKS entries no README block names: {sorted(unused)}"
    return groups, skipped


def test_readme_blocks_are_found_and_skips_are_the_listed_ones():
    groups, skipped = python_blocks()
    text = README.read_text()
    for pattern, _ in REWRITES:
        assert re.search(pattern, text), f"stale rewrite {pattern!r}"
    assert sum(map(len, groups.values())) >= 8 and set(groups) == {"torch", *OWN_BACKEND.values()}
    blocks = {line: code for language, line, code, _ in fenced_blocks(text) if language == "python"}
    found = {next((n for n in SKIPPED if n in blocks[line]), line): reason for line, reason in skipped.items()}
    assert found == SKIPPED, f"README skip markers {skipped} != SKIPPED {SKIPPED}"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", *sorted(set(OWN_BACKEND.values()))])
def test_python_blocks_run(backend, tmp_path):
    blocks = python_blocks()[0][backend]
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"  # 2 x 4 devices
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", XLA_FLAGS=flags.strip(),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(tmp_path / "blocks.json")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert proc.stdout.count(" ran in ") == len(blocks), proc.stdout


# ------------------------------------------------------------------- 2. the CLI commands
CLI_TOKEN = re.compile(r"(?<![\w-])(--[a-z][\w-]*)")


def cli_parsers():
    from keras_mim.cli import build_parser

    parser = build_parser()
    return parser, parser.subparsers


def command_lines(path):
    """`(where, tokens after keras-mim)` of every `keras-mim` line of the file's bash blocks."""
    found = []
    for language, line, code, _ in fenced_blocks(path.read_text()):
        if language not in ("bash", "sh"):
            continue
        for offset, text in enumerate(code.replace("\\\n", "  ").splitlines()):
            tokens = shlex.split(text, comments=True)
            while tokens and re.fullmatch(r"[A-Z_]+=\S*", tokens[0]):  # KERAS_BACKEND=torch ...
                tokens.pop(0)
            if tokens and tokens[0].endswith("keras-mim"):
                found.append((f"{path.name}:{line + offset}", tokens[1:]))
    return found


def inline_commands(path):
    """`(where, text after keras-mim)` of every inline `keras-mim ...` span of the file."""
    spans = [" ".join(span.split()) for paragraph in paragraphs(path.read_text()) for span in code_spans(paragraph)]
    return [(f"{path.name}: `{span}`", span[len("keras-mim "):]) for span in spans if span.startswith("keras-mim ")]


def cli_problems(commands):
    """What is wrong with `(where, text after keras-mim)` commands: unknown subcommands or options."""
    _, subparsers = cli_parsers()
    problems = []
    for where, rest in commands:
        subcommand, _, options = rest.partition(" ")
        for name in subcommand.split("|"):  # `keras-mim knn|probe|finetune`
            if name not in subparsers:
                problems.append(f"{where}: no subcommand {name!r}")
                continue
            known = subparsers[name].option_names
            problems += [f"{where}: `keras-mim {name}` has no {flag}" for flag in CLI_TOKEN.findall(options)
                         if flag not in known]
    return problems


def test_cli_commands_name_existing_subcommands_and_options(tmp_path):
    commands = [(where, " ".join(tokens)) for path in [README, *DOCS] for where, tokens in command_lines(path)]
    commands += [c for path in [README, *DOCS] for c in inline_commands(path)]
    assert len(commands) >= 20 and not cli_problems(commands), "\n".join(cli_problems(commands))
    bad = tmp_path / "bad.md"  # and it would see a wrong one
    bad.write_text("`keras-mim pretrain --epoch 3` or `keras-mim\ntrain`\n\n```bash\nkeras-mim knn m --kk 3\n```\n")
    assert len(cli_problems(inline_commands(bad) + [(w, " ".join(t)) for w, t in command_lines(bad)])) == 3


def test_bare_options_exist():
    """An option named alone (`--random-init`) in the README or the docs exists in some subcommand."""
    _, subparsers = cli_parsers()
    known = {flag for sub in subparsers.values() for flag in sub.option_names}
    flags = {flag: path.name for path in [README, *DOCS] for paragraph in paragraphs(path.read_text())
             for span in code_spans(paragraph) if span.startswith("--") for flag in CLI_TOKEN.findall(span)}
    assert len(flags) >= 10 and set(flags) <= known, {f: flags[f] for f in set(flags) - known}


def test_readme_bash_lines_parse():
    parser, _ = cli_parsers()
    lines = command_lines(README)
    assert len(lines) >= 4
    for where, tokens in lines:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                parser.parse_args(tokens)
            except SystemExit as exit_info:
                pytest.fail(f"{where}: `keras-mim {' '.join(tokens)}` exits {exit_info.code}: {err.getvalue()}")


def test_cli_defaults_the_readme_comments_quote():
    _, subparsers = cli_parsers()
    knn, probe = subparsers["knn"].parse_args(["m.keras"]), subparsers["probe"].parse_args(["m.keras"])
    assert (knn.k, knn.temperature, probe.epochs) == (20, 0.07, 90)  # `# k = 20, T = 0.07`, `# 90 epochs`
