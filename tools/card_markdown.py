"""Print the README's model-card section from src/featuremaps/data/emotion_vgg16.card.json."""

import json
from pathlib import Path

card = json.loads((Path(__file__).resolve().parents[1] / "src/featuremaps/data/emotion_vgg16.card.json").read_text())
acc = card["accuracy"]
r = card["recipe"]
lines = [
    f"- **Model**: {card['model']}. Input: {card['input']}. Classes: {', '.join(card['classes'])}.",
    f"- **Data**: {card['data']}.",
    f"- **Recipe**: {r['optimizer']}, lr {r['lr']}, batch {r['batch_size']}, {r['schedule']}; "
    f"{card['epochs_trained']} epochs, "
    f"{r['augmentation']}, {r['precision']} mixed precision, seed {r['seed']}; best epoch on PublicTest: "
    f"{card['best_epoch']} of {card['epochs_trained']}."
    + (f" {r['notes']}." if r.get("notes") else ""),
    f"- **Hardware**: {card['hardware']}.",
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
