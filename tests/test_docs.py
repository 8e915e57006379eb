"""The generated references in docs/ are in step with the models they document."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_config_and_message_references_are_current():
    proc = subprocess.run([sys.executable, "tools/gen_docs.py", "--check"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "<!-- ci:test-command -->" in readme
    assert "ci:test-command" in ci  # .ci/run executes the README's command itself


def test_readme_topic_table_lists_every_message_topic():
    from storesense.contracts import TOPICS

    readme = (ROOT / "README.md").read_text()
    for kind, (template, qos, retain) in TOPICS.items():
        row = "| `" + template.replace("{", "<").replace("}", ">").replace("<source>", "<node>") + "` | " + kind
        assert row in readme, f"README topic table lacks {kind}: {row}"
