"""Which environment variables a caller may set on a node.

Everything a caller names becomes an environment variable of a script: document
parameters, secret parameters, a run command's parameters and protected parameters.
Some names change how programs load or run rather than what they read: the dynamic
loader's (`LD_PRELOAD`), the shells' start-up files and options (`BASH_ENV`, `ENV`,
`SHELLOPTS`, `PS4`), the search paths (`PATH`, `PYTHONPATH`, `PERL5LIB`), interpreters'
extra options (`PYTHONWARNINGS`, `NODE_OPTIONS`, `JAVA_TOOL_OPTIONS`), and the programs
other programs start (`BROWSER`, `PAGER`, `EDITOR`, `GIT_SSH_COMMAND`). A caller who can
set one of those runs code of their choosing, even through a signed document that never
mentions it. `refusal` says why a name is refused; the server asks it before anything
is stored and the agent asks it again before anything runs, so an older or a
compromised server cannot get past the node.

The list follows sudo's `env_reset` bad-variable table, glibc's variables ignored for
set-user-id programs, and the interpreters' documented start-up variables; Windows names
are compared without case, as Windows does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from fleetrun.core.errors import ValidationError

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

# Exact names (case as on POSIX).
EXACT = frozenset(
    {
        # shells: start-up files, options, parsing, tracing, functions
        "PATH", "IFS", "ENV", "BASH_ENV", "BASHOPTS", "SHELLOPTS", "CDPATH", "GLOBIGNORE",
        "PS0", "PS4", "PROMPT_COMMAND", "FPATH", "NULLCMD", "READNULLCMD", "ZDOTDIR",
        "TMPPREFIX", "HOME", "SHELL", "EXECIGNORE", "INPUTRC",
        # the C library and the resolver
        "GCONV_PATH", "GETCONF_DIR", "GLIBC_TUNABLES", "HOSTALIASES", "LOCALDOMAIN",
        "RES_OPTIONS", "RESOLV_HOST_CONF", "LOCPATH", "NLSPATH", "PATH_LOCALE", "NIS_PATH",
        "TZDIR", "TERMINFO", "TERMINFO_DIRS", "TERMCAP", "TERMPATH", "LIBPATH", "SHLIB_PATH",
        # programs that other programs start
        "BROWSER", "EDITOR", "VISUAL", "PAGER", "MANPAGER", "MANOPT", "SYSTEMD_PAGER",
        "SYSTEMD_EDITOR", "LESSOPEN", "LESSCLOSE", "LESSKEY", "LESSKEYIN", "SSH_ASKPASS",
        "SUDO_ASKPASS", "SUDO_EDITOR",
        # interpreters and tools that load code or options from the environment
        "NODE_OPTIONS", "NODE_PATH", "CLASSPATH", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS",
        "JDK_JAVA_OPTIONS", "GEM_HOME", "GEM_PATH", "BUNDLE_GEMFILE", "PHPRC",
        "PHP_INI_SCAN_DIR", "TCLLIBPATH", "R_PROFILE", "R_PROFILE_USER", "OPENSSL_CONF",
        "OPENSSL_ENGINES", "OPENSSL_MODULES", "MAKEFLAGS", "MFLAGS", "GNUMAKEFLAGS",
        "MAKEFILES", "GIT_SSH", "GIT_SSH_COMMAND", "GIT_EXEC_PATH", "GIT_EDITOR",
        "GIT_SEQUENCE_EDITOR", "GIT_PAGER", "GIT_ASKPASS", "GIT_EXTERNAL_DIFF",
        "GIT_PROXY_COMMAND", "GIT_TEMPLATE_DIR", "GIT_DIR", "KRB5_KTNAME",
    }
)  # fmt: skip

# Name prefixes (case as on POSIX).
PREFIXES = (
    "LD_",  # the dynamic loader: LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT...
    "DYLD_",  # the macOS loader
    "_RLD",  # IRIX / Tru64 loaders
    "LDR_",  # the AIX loader
    "BASH_FUNC_",  # exported bash functions
    "PYTHON",  # PYTHONPATH, PYTHONSTARTUP, PYTHONWARNINGS, PYTHONHOME...
    "PERL",  # PERL5LIB, PERL5OPT, PERLLIB, PERLIO...
    "RUBY",  # RUBYLIB, RUBYOPT
    "LUA_",  # LUA_INIT runs code
    "MALLOC_",  # the C library's allocator
    "GIT_CONFIG",  # GIT_CONFIG_PARAMETERS, GIT_CONFIG_COUNT/KEY_n/VALUE_n
    "KRB5_CONFIG",
)
RESERVED = "FLEETRUN_"  # set by fleetrun itself: ids, and the variables that carry values

# Windows: names are not case-sensitive there.
WINDOWS_EXACT = frozenset(
    {"PATH", "PATHEXT", "COMSPEC", "PSMODULEPATH", "PSEXECUTIONPOLICYPREFERENCE",
     "SYSTEMROOT", "WINDIR"}
)  # fmt: skip
WINDOWS_PREFIXES = ("COR_", "CORECLR_", "COMPLUS_", "DOTNET_")


def refusal(name: str, *, caller: bool = True) -> str | None:
    """Why the environment variable `name` may not be set, or None if it may. With
    `caller` (a name a caller chose), names fleetrun sets itself are refused too; the
    variables fleetrun derives (`FLEETRUN_P_...`) pass with caller False."""
    if not NAME_RE.match(name):
        return f"{name!r} is not a valid environment variable name: use letters, digits and _"
    if caller and name.startswith(RESERVED):
        return f"names starting with {RESERVED} are set by fleetrun itself"
    upper = name.upper()
    if (
        name in EXACT
        or name.startswith(PREFIXES)
        or upper in WINDOWS_EXACT
        or upper.startswith(WINDOWS_PREFIXES)
    ):
        return f"{name} changes how programs load or run on the node"
    return None


def check(names: Iterable[str], what: str, *, caller: bool = True) -> None:
    """Raise a ValidationError naming the first name that may not be set."""
    for name in names:
        reason = refusal(name, caller=caller)
        if reason:
            raise ValidationError(f"{what} {name!r} cannot be set: {reason}; choose another name.")


def invocation_refusal(
    step_env: Iterable[str], secrets: Iterable[str], declared: Iterable[str] | None = None
) -> str | None:
    """What a node says when an invocation would set a variable it must not: one in
    the steps' environment or a secret's name that changes how programs load or run,
    or (with `declared`, on a node that runs only signed documents) a secret the
    signed document does not declare. None when every name may be set."""
    for name in step_env:
        reason = refusal(name, caller=False)
        if reason:
            return f"This node does not set the environment variable {name}: {reason}."
    allowed = None if declared is None else set(declared)
    for name in secrets:
        reason = refusal(name)
        if reason:
            return f"This node does not set the secret parameter {name}: {reason}."
        if allowed is not None and name not in allowed:
            return (
                "security.require_signed_documents is true and the secret parameter "
                f"{name} is not a parameter of the signed document: only variables the "
                "signed document declares reach its script (pass secrets to such a node "
                "as secret arguments)."
            )
    return None
