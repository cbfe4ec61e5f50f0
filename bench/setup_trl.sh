#!/usr/bin/env bash
# bench/.venv-trl: TRL for the peer comparison, kept out of the project's .venv.
# The venv reuses the project's packages (torch, transformers, vLLM, datasets, ...) through a .pth
# file and adds only TRL itself, so both sides run the very same torch and transformers.
set -euo pipefail
cd "$(dirname "$0")/.."
TRL_VERSION="${TRL_VERSION:-1.16.0}"
VENV=bench/.venv-trl
PROJECT_SITE=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
BASE_PYTHON=$(.venv/bin/python -c "import sys; print(sys._base_executable)")
[ -x "$VENV/bin/python" ] || "$BASE_PYTHON" -m venv "$VENV"
SITE=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
# addsitedir (not a bare path) so that the project's own .pth files (its editable install) are read too.
echo "import site; site.addsitedir('$PROJECT_SITE')" > "$SITE/r1ray_project.pth"
"$VENV/bin/pip" install -q --no-deps "trl==$TRL_VERSION"
"$VENV/bin/python" -c "import trl, transformers, torch; from trl import GRPOTrainer; print('trl', trl.__version__, 'transformers', transformers.__version__, 'torch', torch.__version__)"
