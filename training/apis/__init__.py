"""REST API of training: snapshots, rounds and models, base models, serving, project dumps. One module per thing."""

from training.apis.bases import *  # noqa: F401,F403
from training.apis.dumps import *  # noqa: F401,F403
from training.apis.runs import *  # noqa: F401,F403
from training.apis.screening import *  # noqa: F401,F403
from training.apis.serving import *  # noqa: F401,F403
from training.apis.snapshots import *  # noqa: F401,F403
