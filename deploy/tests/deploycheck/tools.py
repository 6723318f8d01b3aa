"""The command-line tools the checks run, and where they come from.

checkov pins old versions of common libraries (packaging, boto3, networkx...) that would
downgrade the workspace lock, so `make helm-check` installs it, with the CRD models, into
its own venv (.venv-deploy, from deploy/tests/deploy-tools.txt). promtool comes from
Debian's prometheus package (tools/bootstrap/system-deps.sh).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from deploycheck.chart import REPO

__all__ = ["CHECKOV", "DEPLOY_PYTHON", "promtool"]

DEPLOY_VENV = REPO / ".venv-deploy"
CHECKOV = DEPLOY_VENV / "bin" / "checkov"
DEPLOY_PYTHON = DEPLOY_VENV / "bin" / "python"


def promtool() -> Path:
    """promtool from PATH or Debian's /usr/bin, else AssertionError saying how to get it."""
    found = shutil.which("promtool") or (
        "/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None
    )
    assert found, (
        "promtool is missing: run `make helm-check`, which installs Debian's prometheus package"
    )
    return Path(found)
