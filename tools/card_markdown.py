"""Print the README's model-card section from src/featuremaps/data/emotion_vgg16.card.json."""

import json
from pathlib import Path

card = json.loads((Path(__file__).resolve().parents[1] / "src/featuremaps/data/emotion_vgg16.card.json").read_text())
acc = card["accuracy"]


def recipe_lines(card: dict) -> list[str]:
    """A line for the common recipe, then one per training stage (a run continued with --init bundled)."""
    stages = card["stages"]  # tools/ship_emotion.py writes them
    r = stages[-1]["recipe"]
    out = [
        f"- **Recipe**: {r['optimizer']}, batch {r['batch_size']}, {r['augmentation']}, {r['precision']} mixed "
        f"precision, seed {r['seed']}; {card['epochs_trained']} epochs in {len(stages)} stage(s); best epoch on "
        f"PublicTest: {card['best_epoch']} of {card['epochs_trained']}."
    ]
    first = 1
    for i, st in enumerate(stages, start=1):
        r = st["recipe"]
        last = first + st["epochs"] - 1
        init = r.get("init")
        start = (
            f"from the shipped weights after epoch {init['epochs_before']} (BN unfolded with statistics measured "
            "on 4,096 training faces, fresh SGD momentum)"
            if init
            else "from random weights (He init)"
        )
        sched = r["schedule"] + (f" over {r['epochs']} epochs, peak lr {r['lr']}" if init else "")
        out.append(
            f"  - Stage {i}, epochs {first}-{last}, {st['hardware']}: {start}; lr schedule: {sched}."
            + (f" {r['notes']}." if r.get("notes") else "")
        )
        first = last + 1
    return out


lines = [
    f"- **Model**: {card['model']}. Input: {card['input']}. Classes: {', '.join(card['classes'])}.",
    f"- **Data**: {card['data']}.",
    *recipe_lines(card),
    f"- **Accuracy** (float16 weights as shipped): PublicTest {acc['PublicTest']:.2%}, "
    f"**PrivateTest {acc['PrivateTest']:.2%}**"
    + (f" ({acc['PrivateTest_tta']:.2%} with ten-view test-time augmentation)" if acc.get("PrivateTest_tta") else "")
    + f"; float32 PrivateTest {acc['PrivateTest_float32']:.2%}.",
    "",
    "| class | precision | recall | F1 |",
    "|---|---:|---:|---:|",
]
for c, m in card["per_class_PrivateTest"].items():
    lines.append(f"| {c} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} |")
print("\n".join(lines))
