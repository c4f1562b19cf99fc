# SPDX-License-Identifier: GPL-3.0-or-later
"""Offline stand-in for get-pip.py, seeded into ansible-test's cache by tools/sanity.sh.

ansible-test downloads the real get-pip.py from ci-files.testing.ansible.com, which this project's
machines cannot reach (only the package index is). This installs the pip bundled with the
interpreter (ensurepip), then lets it install the pins ansible-test asks for from the index.
"""

import ensurepip
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
ARGS = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--upgrade"] + ARGS))
