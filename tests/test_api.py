"""Every `sgjax.…(` call the README and docs show resolves, from a fresh `import sgjax`."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Run in a fresh interpreter: in this one, other tests' imports would set the submodule attributes.
CHECK = r"""
import importlib, pathlib, re, sys
import sgjax

def resolve(name, import_submodules):
    obj, path = sgjax, "sgjax"
    for part in name.split(".")[1:]:
        path += "." + part
        if import_submodules and not hasattr(obj, part):
            importlib.import_module(path)  # as `import sgjax.data.qf_ti` would
        obj = getattr(obj, part)

calls = lambda text: set(re.findall(r"\b(sgjax(?:\.[A-Za-z_]\w*)+)\(", text))
readme = calls(pathlib.Path("README.md").read_text())
docs = set().union(*(calls(p.read_text()) for p in pathlib.Path("docs").glob("*.md"))) - readme
bad = []
for names, deep in ((readme, False), (docs, True)):
    for name in sorted(names):
        try:
            resolve(name, deep)
        except (AttributeError, ImportError) as e:
            bad.append(f"{name}: {e}")
print(len(readme), len(docs))
sys.exit("\n".join(bad) or None)
"""


def test_the_documented_python_api_resolves():
    """README names are attributes after `import sgjax` (lazy submodules); docs names import."""
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    n_readme, n_docs = map(int, proc.stdout.split())
    assert n_readme >= 8 and n_docs >= 5  # the pattern still finds the calls
