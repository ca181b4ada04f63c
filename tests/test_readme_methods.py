"""The README's numbers come from their sources: the methods table from the method registry
(tools/readme_methods.py), and every number in its prose from a checked source
(`test_prose_numbers_have_a_source`): `NUMBERS` maps each phrase holding one to a check
against the code, a README block's CHECKS entry (tests/test_readme.py), a committed JSON in
benchmarks/results, or the command in the same paragraph; a new or changed number fails
until it gets one."""

import importlib.util
import inspect
import json
import pathlib
import re

import pytest

from tests.test_readme import CHECKS, README, ROOT, cli_parsers, code_spans, paragraphs

pytestmark = pytest.mark.backend_independent

TOOL = pathlib.Path(__file__).resolve().parents[1] / "tools" / "readme_methods.py"


def load_tool():
    spec = importlib.util.spec_from_file_location("readme_methods", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_methods_table_is_current():
    tool = load_tool()
    text = tool.README.read_text()
    assert tool.with_table(text) == text, "run: python tools/readme_methods.py"


def test_table_lists_every_method_once():
    from keras_mim.models import METHODS

    table = load_tool().methods_table()
    for name, spec in METHODS.items():
        assert table.count(f"| `{name}` |") == 1 and spec.model.__name__ in table


# --------------------------------------------------------------------- the prose numbers
NUMBER = re.compile(r"(?<![A-Za-z_\d.])\d+(?:\.\d+)*(?:e-?\d+)?%?")  # not the 2 of data2vec or V2


def prose(text):
    """The README's paragraphs as a reader sees their words: whitespace joined, inline code
    and link targets removed (the commands in code spans are checked by tests/test_readme.py)."""
    out = []
    for paragraph in paragraphs(text):
        paragraph = re.sub(r"`[^`]+`", "``", paragraph)
        paragraph = re.sub(r"\]\([^)]*\)", "]", paragraph)
        out.append(re.sub(r"\s+", " ", paragraph).strip())
    return out


def _source(path):
    return (ROOT / path).read_text()


def _defaults(function):
    return {name: p.default for name, p in inspect.signature(function).parameters.items()}


def _masks_defaults():
    args = cli_parsers()[1]["masks"].parse_args([])
    return (args.image_size, args.patch_size, args.image) == (224, 16, "astronaut")


def _finetune_recipes():
    from keras_mim.cli.finetune import AUGMENTATIONS, LIGHT_BELOW

    light, mae = AUGMENTATIONS["light"], AUGMENTATIONS["mae"]
    return (LIGHT_BELOW == 20000 and light["base_learning_rate"] == 4 * mae["base_learning_rate"]
            and light["rand_augment_ops"] == light["mixup"] == light["cutmix"] == 0)


def _medical_defaults():
    from keras_mim.data.augmentation import medical_augmentation

    return _defaults(medical_augmentation)["scale"] == (0.5, 1.0) and not _defaults(medical_augmentation)[
        "horizontal_flip"]


def _mask_generators():
    from keras_mim.masking import MASK_GENERATORS

    return MASK_GENERATORS


def _conv_cost_ratios(paragraph):
    """The README's step-cost ratios of SparK and FCMAE are those of their benchmark JSON."""
    record = json.loads(_source("benchmarks/results/convnet_step_cost_torch.json"))
    ratios = record["ratio_to_vit"]
    if "Hiera-Tiny" in paragraph:
        return record["backend"] == "torch" and f"Hiera-Tiny took {ratios['hiera_mae_hiera_tiny']:.1f}x" in paragraph
    return (record["backend"] == "torch" and f"took {ratios['spark_resnet50']:.1f}x" in paragraph
            and f"Pico {ratios['fcmae_convnextv2_pico']:.1f}x" in paragraph)


def _preset(name):
    from keras_mim.models.presets import PRESETS

    return PRESETS[name]


KERAS_PIN = '"keras>=3.15,<3.16"'
CROSS_BACKEND = ('SAVERS = ("tensorflow", "jax", "torch")', "RTOL = 1e-5")  # 3 savers x 3 loading passes

# Each phrase of the README's prose that holds a number -> whether its source agrees: the code,
# a README block's CHECKS entry, a committed JSON, or (the argument) its paragraph naming the
# command that measured it.
NUMBERS = {
    "written once in Keras 3,": lambda paragraph: KERAS_PIN in _source("pyproject.toml"),
    "support in Keras 3.15": lambda paragraph: KERAS_PIN in _source("pyproject.toml"),
    "ViT-H/14": lambda paragraph: _preset("mae_vit_huge_patch14")["encoder"]["patch_size"] == 14,
    "a SparK step on ResNet50 took 6.0x": lambda paragraph: _conv_cost_ratios(paragraph),
    "on ViT-S/16, FCMAE on ConvNeXt V2-Pico 1.7x": lambda paragraph: _conv_cost_ratios(paragraph),
    "MAE on ViT-Ti/16": lambda paragraph: _conv_cost_ratios(paragraph),
    "PyTorch, 2-core CPU)": lambda paragraph: _conv_cost_ratios(paragraph),
    "A step on Hiera-Tiny took 2.3x an MAE step on ViT-S/16": lambda paragraph: _conv_cost_ratios(paragraph),
    "(units of 8 x 8 tokens, 32 px at the official size)": lambda paragraph: (
        _preset("hiera_mae_hiera_tiny")["encoder_class"].cell_size(**_preset("hiera_mae_hiera_tiny")["encoder"]) == 32
        and _preset("hiera_mae_hiera_tiny")["encoder"].get("patch_stride", 4) == 4),
    "the visible 32 px cells only": lambda paragraph: all(
        _preset(p)["encoder_class"].cell_size(**_preset(p)["encoder"]) == 32
        for p in ("fcmae_convnextv2_atto", "spark_resnet50", "spark_convnextv2_atto_64")),
    "all 16 strategies": lambda paragraph: len(_mask_generators()) == 16,
    "(B, N; 1 = hidden)": lambda paragraph: 'load_sample_images("digits"' in CHECKS,
    "float32 batches in [0, 1]": lambda paragraph: 'image_dataset("data/xrays"' in CHECKS,
    "float pixels must already be in [0, 1] (0-255 or [-1, 1] floats raise":
        lambda paragraph: 'image_dataset("data/xrays"' in CHECKS,
    "16-bit PNG/TIFF is divided by 65535": lambda paragraph: 'image_dataset("data/xrays"' in CHECKS,
    "(no flips, scale 0.5-1)": lambda paragraph: _medical_defaults(),
    "(mask ratio 0.9, crops of scale 0.5-1 without flips)": lambda paragraph: _medical_defaults() and all(
        _preset(p)["kwargs"]["mask_ratio"] == 0.9 and _preset(p)["augmentation"] == "medical"
        for p in ("medmae_vit_base_patch16", "medmae_vit_small_patch16")),
    "224 px, 16 px patches": lambda paragraph: _masks_defaults(),
    "all 9 saver/loader pairs": lambda paragraph: CROSS_BACKEND[0] in _source("tests/test_cross_backend.py"),
    "rtol 1e-5": lambda paragraph: CROSS_BACKEND[1] in _source("tests/test_cross_backend.py"),
    "under 20000 images with flips only at a 4x higher learning rate": lambda paragraph: _finetune_recipes(),
    "with 10% of the labels (test top-1": lambda paragraph: all(
        "finetune_0.1" in next(iter(json.loads(_source(f"benchmarks/results/{f}"))["sets"].values()))["results"]["pretrained"]
        for f in VALUE_SETS.values()),
    "by 9.3 points at 10% of the labels on Animal-MNIST": lambda paragraph: _value("animal")["goals"][
        "finetune_10pct_gain_points"] == 9.3,
    "reaches 0.911 with all labels against the small CNN's 0.872": lambda paragraph: (
        round(_value("animal")["results"]["pretrained"]["finetune_1"], 3),
        round(_value("animal")["results"]["small_cnn"]["1"], 3)) == (0.911, 0.872),
    "the issue's +10-point goals": lambda paragraph: all(
        _value(name)["goals"]["target_points"] == 10 for name in ("fashion", "animal")),
    "axis: 0.8 of the patches hidden": lambda paragraph: _preset("audiomae_vit_base_patch16").get("kwargs", {}).get(
        "mask_ratio", 0.8) == 0.8 and "mask_ratio=0.8" in _source("keras_mim/models/audio_mae.py"),
    "a decoder attending inside 4 x 4 windows": lambda paragraph: all(
        _preset(p)["decoder"]["window_size"] == (4, 4) for p in ("audiomae_vit_base_patch16", "audiomae_vit_tiny_patch8")),
    "(k-NN 87.3% vs 37.5%, ridge probe 95.3% vs 82.5%, ten words)": lambda paragraph: _audio_result() == (
        0.8725, 0.375, 0.9525, 0.825),
    "in Keras ops), hides 0.6 of them": lambda paragraph: "mask_ratio=0.6" in _source("keras_mim/models/point_mae.py")
    and "mask_ratio" not in str(_preset("pointmae_tiny").get("kwargs", {})),
    "k-NN (56.7% vs 40.7%, six classes) and hardly by a ridge probe (60.0% vs 58.7%)": lambda paragraph: (
        _point_result() == (0.5667, 0.4067, 0.6, 0.5867)),
    "(Sentinel-2's official grouping, or yours)": lambda paragraph: "SENTINEL2_GROUPS = ((0, 1, 2, 6), (3, 4, 5, 7), "
    "(8, 9))" in _source("keras_mim/models/satmae.py"),
    "13-band tiles": lambda paragraph: 'SENTINEL2_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", '
    '"B10", "B11", "B12")' in _source("keras_mim/data/multispectral.py"),
    "Apache-2.0": lambda paragraph: 'license = "Apache-2.0"' in _source("pyproject.toml")
    and "Version 2.0" in _source("LICENSE"),
}


def _point_result():
    """k-NN and ridge-probe top-1, pretrained then random init, of the Point-MAE shapes benchmark."""
    r = json.loads(_source("benchmarks/results/pointmae_shapes_torch.json"))
    return (r["pretrained"]["knn_top1"], r["random_init"]["knn_top1"], r["pretrained"]["ridge_linear_probe_top1"],
            r["random_init"]["ridge_linear_probe_top1"])


def _audio_result():
    """k-NN and ridge-probe top-1, pretrained then random init, of the Audio-MAE spoken-digit benchmark."""
    r = json.loads(_source("benchmarks/results/audiomae_spoken_digits_torch.json"))
    return (r["pretrained"]["knn_top1"], r["random_init"]["knn_top1"], r["pretrained"]["ridge_linear_probe_top1"],
            r["random_init"]["ridge_linear_probe_top1"])


def _value(name):
    """The one set's record of benchmarks/results/value_study_<name>_jax.json."""
    (record,) = json.loads(_source(f"benchmarks/results/value_study_{name}_jax.json"))["sets"].values()
    return record


#: The value study's README table: set name -> its committed JSON (benchmarks/results).
VALUE_SETS = {"Fashion-MNIST": "value_study_fashion_jax.json", "Animal-MNIST": "value_study_animal_jax.json"}
VALUE_HEADER = ("| set: unlabeled images, MAE pretraining | fine-tuned after pretraining | same ViT from scratch "
                "| small CNN | logistic regression on pixels | linear probe: pretrained / random init |")


def value_table():
    """The README's value table, built from the JSONs (every number in it comes from there)."""
    rows = [VALUE_HEADER, "|---|---|---|---|---|---|"]
    for name, file in VALUE_SETS.items():
        record = json.loads(_source(f"benchmarks/results/{file}"))
        (s,) = record["sets"].values()
        r = s["results"]
        minutes = round(s["curve"]["train_seconds"][-1] / 60)  # the epochs' training time, probes excluded
        rows.append(f"| {name}: {s['num_pretrain']}, {record['args']['pretrain_epochs']} epochs ({minutes} min) "
                    f"| {r['pretrained']['finetune_0.1']:.3f} | {r['random_init']['finetune_0.1']:.3f} "
                    f"| {r['small_cnn']['0.1']:.3f} | {r['pixels_logistic_regression']['0.1']['top1']:.3f} "
                    f"| {r['pretrained']['probe']:.3f} / {r['random_init']['probe']:.3f} |")
    return "\n".join(rows)


def test_value_table_matches_its_json():
    assert value_table() in README.read_text(), "the README's value table differs from benchmarks/results"


#: The README's downstream-study rows per method, from benchmarks/downstream_study.py's JSONs.
STUDY_ROWS = {"MAE": "downstream_digits_jax.json", "EVA-style, MAE teacher": "downstream_digits_eva_jax.json",
              "MILAN-style, MAE teacher": "downstream_digits_milan_jax.json", "iBOT": "downstream_digits_ibot_jax.json",
              "CAE": "downstream_digits_cae_jax.json", "I-JEPA": "downstream_digits_ijepa_jax.json"}
STUDY_EVALS = ("knn", "knn_10_per_class", "probe", "probe_10_per_class")


def study_table():
    """The README's table of methods on the digits study, built from the JSONs."""
    epochs = {json.loads(_source(f"benchmarks/results/{f}"))["pretrain_epochs"] for f in STUDY_ROWS.values()}
    (epochs,) = epochs  # one budget for every row
    rows = [f"| digits, {epochs} epochs: pretrained / random init | k-NN | k-NN, 10 labels per class "
            "| linear probe | linear probe, 10 labels per class |", "|---|---|---|---|---|"]
    for name, file in STUDY_ROWS.items():
        r = json.loads(_source(f"benchmarks/results/{file}"))["results"]
        cells = [f"{r['pretrained'][e]:.3f} / {r['random_init'][e]:.3f}" for e in STUDY_EVALS]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def test_study_table_matches_its_json():
    assert study_table() in README.read_text(), "the README's study table differs from benchmarks/results"


def test_prose_numbers_have_a_source():
    problems, seen = [], set()
    tables = {" ".join(t.split()) for t in (value_table(), study_table())}  # checked number by number above
    for paragraph in prose(README.read_text()):
        if paragraph in tables:
            continue
        covered = []
        for phrase, check in NUMBERS.items():
            for match in re.finditer(re.escape(phrase), paragraph):
                covered.append(match.span())
                if phrase not in seen:
                    seen.add(phrase)
                    assert check(paragraph), f"the README's {phrase!r} disagrees with its source (NUMBERS)"
        for match in NUMBER.finditer(paragraph):
            if not any(start <= match.start() and match.end() <= end for start, end in covered):
                context = paragraph[max(0, match.start() - 50):match.end() + 30]
                problems.append(f"{match.group()!r} in ...{context}...")
    assert not problems, "numbers without an entry in NUMBERS (give each a source):\n" + "\n".join(problems)
    assert seen == set(NUMBERS), f"NUMBERS phrases no longer in the README: {sorted(set(NUMBERS) - seen)}"


def test_masking_strategies_the_readme_counts_and_lists():
    text = README.read_text()
    assert "Sixteen masking strategies" in text and len(_mask_generators()) == 16
    table = next(p for p in paragraphs(text) if p.startswith("| name | class | hides |"))
    names = [n for row in table.splitlines()[2:] for n in code_spans(row.split("|")[1])]
    assert sorted(names) == sorted(_mask_generators())


def test_study_claim_matches_its_json():
    """'MAE pretraining beats the same encoder at its random initialisation on k-NN and
    fine-tuning, but not on linear probes' (docs/study.md)."""
    text = " ".join(README.read_text().split())
    assert ("beats the same encoder at its random initialisation on k-NN and fine-tuning, "
            "but not on linear probes") in text
    results = json.loads(_source("benchmarks/results/downstream_digits_jax.json"))["results"]
    mae, random_init = results["pretrained"], results["random_init"]
    for evaluation in ("knn", "knn_10_per_class", "finetune", "finetune_mae_recipe"):
        assert mae[evaluation] > random_init[evaluation] + 0.05, evaluation
    for evaluation in ("probe", "probe_10_per_class"):
        assert mae[evaluation] < random_init[evaluation] + 0.02, evaluation


def test_teacher_features_are_a_target():
    """A frozen teacher's features are a target any target-taking model can score against
    (`get_target` takes them), besides reaching MaskAlign / MR-MAE through `teacher=`."""
    from keras_mim.models import ViTEncoder
    from keras_mim.targets import Target, TeacherFeatures, get_target

    teacher = TeacherFeatures(ViTEncoder(image_size=8, patch_size=4, embed_dim=8, depth=1, num_heads=1))
    assert isinstance(teacher, Target) and get_target(teacher) is teacher
