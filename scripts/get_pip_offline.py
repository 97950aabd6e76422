"""Stand-in for the pip bootstrap script that ansible-test downloads from a host we cannot reach.

ansible-test runs this file as __main__ inside each fresh sanity virtualenv with pip-install
arguments. We install the pip wheel that ships with CPython (ensurepip, offline), then let
that pip install what ansible-test asked for from the package index this machine uses.
"""

import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
# --no-setuptools / --no-wheel are get-pip's own options (do not add those packages): pip lacks them.
args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + args))
