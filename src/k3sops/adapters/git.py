"""git through its command line: clone, fetch, commit, push with rebase, history of a file.

Every call runs ``git`` without a terminal prompt (``GIT_TERMINAL_PROMPT=0``), in the C locale
(so that messages can be recognised), with a timeout. Failures become k3sops errors naming the
repository and the git command; a URL's user:password part is never shown in a message.

A :class:`Repo` is a working clone that k3sops owns (kept under the state directory): it may
reset it to the remote freely. A user's own clone is never touched.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from k3sops.errors import AdapterError, Conflict, NotFound, Timeout

_CREDENTIALS = re.compile(r"(://)[^/@\s]+@")
GIT_TIMEOUT = 120.0


def redact(text: str) -> str:
    """Remove ``user:password@`` from URLs in ``text``."""
    return _CREDENTIALS.sub(r"\1***@", text)


@dataclass(frozen=True)
class Commit:
    """One commit touching a file: its id, author time (ISO 8601), subject and body."""

    sha: str
    when: str
    subject: str
    body: str


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "LANG": "C"})
    env.update(extra or {})
    return env


def run_git(args: Sequence[str], cwd: Path | None, what: str, *,
            check: bool = True, timeout: float = GIT_TIMEOUT,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``git ARGS`` in ``cwd``; raise AdapterError (naming ``what``) when it fails.

    Raises:
        AdapterError: git is missing or exited non-zero (``check``); the message holds git's
            own last lines, with credentials removed.
        Timeout: git did not finish within ``timeout`` seconds.
    """
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, check=False, env=_env(env))
    except FileNotFoundError as e:
        raise AdapterError("git is not installed", hint="install git (apt-get install git)") from e
    except subprocess.TimeoutExpired as e:
        raise Timeout(f"git {args[0]} for {redact(what)} did not finish within {timeout:g}s",
                      hint="is the remote reachable?") from e
    if check and done.returncode != 0:
        tail = redact((done.stderr or done.stdout).strip())[-800:]
        raise AdapterError(f"git {args[0]} failed for {redact(what)}: {tail}")
    return done


class Repo:
    """A working clone owned by k3sops, tracking ``branch`` of ``remote``."""

    def __init__(self, path: Path, remote: str, branch: str) -> None:
        self.path = path
        self.remote = remote
        self.branch = branch

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a git command in the clone."""
        return run_git(args, self.path, self.remote, check=check)

    @classmethod
    def open(cls, path: Path, remote: str, branch: str) -> Repo:
        """Clone ``remote`` into ``path`` (or reuse it) and reset it to the remote ``branch``.

        Raises:
            NotFound: the remote or the branch does not exist.
            AdapterError: another git failure.
        """
        repo = cls(path, remote, branch)
        if not (path / ".git").is_dir():
            path.parent.mkdir(parents=True, exist_ok=True)
            done = run_git(["clone", "--quiet", "--branch", branch, remote, str(path)], None,
                           remote, check=False)
            if done.returncode != 0:
                msg = redact(done.stderr.strip())[-600:]
                if "not found" in msg or "does not exist" in msg or "not a git repo" in msg \
                        or "Could not find remote branch" in msg:
                    raise NotFound(f"GitOps repository {redact(remote)} (branch {branch}) "
                                   f"cannot be cloned: {msg}",
                                   hint="check gitops.repo and gitops.branch in platform.yaml, "
                                        "or create it with `k3sops gitops init PATH`")
                raise AdapterError(f"cannot clone {redact(remote)}: {msg}")
        else:
            repo.git("remote", "set-url", "origin", remote)
            repo.sync()
        return repo

    def sync(self) -> None:
        """Fetch and reset the clone to ``origin/branch`` (dropping anything unpushed)."""
        self.git("fetch", "--quiet", "--prune", "origin")
        if self.git("rev-parse", "--verify", "--quiet", f"origin/{self.branch}",
                    check=False).returncode != 0:
            raise NotFound(f"branch {self.branch} does not exist in {redact(self.remote)}",
                           hint="check gitops.branch in platform.yaml")
        self.git("checkout", "--quiet", "-B", self.branch, f"origin/{self.branch}")
        self.git("reset", "--quiet", "--hard", f"origin/{self.branch}")
        self.git("clean", "--quiet", "-fdx")

    def head(self) -> str:
        """The commit id checked out."""
        return self.git("rev-parse", "HEAD").stdout.strip()

    def _ident(self) -> dict[str, str]:
        """The user's git identity when one is configured, else k3sops' own.

        Commits always carry an author; who asked for the change is also in their trailers.
        """
        if self.git("config", "user.email", check=False).stdout.strip():
            return {}
        return {"GIT_AUTHOR_NAME": "k3sops", "GIT_AUTHOR_EMAIL": "k3sops@localhost",
                "GIT_COMMITTER_NAME": "k3sops", "GIT_COMMITTER_EMAIL": "k3sops@localhost"}

    def commit(self, paths: Sequence[str], message: str) -> str | None:
        """Commit the given paths with ``message``; None when nothing changed."""
        self.git("add", "--", *paths)
        if self.git("diff", "--cached", "--quiet", check=False).returncode == 0:
            return None
        msg_file = self.path / ".git" / "K3SOPS_MSG"
        msg_file.write_text(message)
        try:
            run_git(["commit", "--quiet", "--file", str(msg_file)], self.path, self.remote,
                    env=self._ident())
        finally:
            msg_file.unlink(missing_ok=True)
        return self.head()

    def push(self, rebase_attempts: int = 3) -> None:
        """Push ``branch``; when the remote moved, rebase onto it and try again.

        Raises:
            Conflict: the remote changed the same lines (the rebase was aborted and the clone
                left as the remote has it), or it kept moving for every attempt.
        """
        for _ in range(rebase_attempts):
            done = self.git("push", "--quiet", "--porcelain", "origin",
                            f"HEAD:refs/heads/{self.branch}", check=False)
            if done.returncode == 0:
                return
            text = done.stderr + done.stdout
            if "rejected" not in text and "non-fast-forward" not in text and "fetch first" \
                    not in text:
                raise AdapterError(f"git push to {redact(self.remote)} failed: "
                                   f"{redact(text.strip())[-600:]}")
            self.git("fetch", "--quiet", "origin")
            rebased = run_git(["rebase", "--quiet", f"origin/{self.branch}"], self.path,
                              self.remote, check=False, env=self._ident())
            if rebased.returncode != 0:
                self.git("rebase", "--abort", check=False)
                theirs = self.git("log", "-1", "--format=%h %s", f"origin/{self.branch}").stdout
                self.sync()
                raise Conflict(f"{redact(self.remote)} {self.branch} changed the same lines "
                               f"meanwhile ({theirs.strip()}); nothing was pushed",
                               hint="look at the new state (k3sops env status) and run the "
                                    "command again if it still applies")
        raise Conflict(f"{redact(self.remote)} {self.branch} kept moving; gave up after "
                       f"{rebase_attempts} attempts", hint="run the command again")

    def push_branch(self, name: str) -> None:
        """Push HEAD to a new branch ``name`` (for review); refuse to overwrite one.

        Raises:
            Conflict: the branch already exists on the remote with other content.
        """
        done = self.git("push", "--quiet", "--porcelain", "origin", f"HEAD:refs/heads/{name}",
                        check=False)
        if done.returncode != 0:
            raise Conflict(f"cannot push review branch {name} to {redact(self.remote)}: "
                           f"{redact((done.stderr + done.stdout).strip())[-400:]}",
                           hint="a branch of that name exists: merge or delete it first")

    def history(self, path: str, limit: int = 50) -> list[Commit]:
        """Commits that changed ``path`` on the checked-out branch, newest first."""
        sep = "\x1e"
        out = self.git("log", f"-{limit}", f"--format=%H%x1f%aI%x1f%s%x1f%b{sep}",
                       "--", path).stdout
        commits = []
        for raw in out.split(sep):
            rec = raw.strip("\n")
            if not rec:
                continue
            sha, when, subject, body = [*rec.split("\x1f"), "", "", ""][:4]
            commits.append(Commit(sha=sha, when=when, subject=subject, body=body))
        return commits

    def show(self, rev: str, path: str) -> str | None:
        """The content of ``path`` at ``rev``; None when it did not exist there."""
        done = self.git("show", f"{rev}:{path}", check=False)
        return done.stdout if done.returncode == 0 else None

    def diff(self, rev: str) -> str:
        """``git show`` of one commit's patch (for reports and tests)."""
        return self.git("show", "--format=", rev).stdout


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) for the block.

    Two k3sops runs sharing a state directory take turns on its GitOps clone.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def init_remote(path: Path, branch: str) -> None:
    """Create a bare repository at ``path`` whose HEAD is ``branch`` (for tests and demos)."""
    run_git(["init", "--quiet", "--bare", "--initial-branch", branch, str(path)], None,
            str(path))


def publish_tree(tree: Path, remote: str, branch: str, message: str) -> str:
    """Make ``tree`` a git repository (if it is not one), commit everything, push it.

    Used by ``gitops init --push``: the first commit of a new GitOps repository.
    """
    if not (tree / ".git").is_dir():
        run_git(["init", "--quiet", "--initial-branch", branch], tree, str(tree))
    repo = Repo(tree, remote, branch)
    if repo.git("remote", check=False).stdout.split().count("origin"):
        repo.git("remote", "set-url", "origin", remote)
    else:
        repo.git("remote", "add", "origin", remote)
    repo.git("add", "--all")
    sha = repo.commit(["."], message) or repo.head()
    done = repo.git("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}", check=False)
    if done.returncode != 0:
        raise AdapterError(f"cannot push the new repository to {redact(remote)}: "
                           f"{redact(done.stderr.strip())[-400:]}",
                           hint="the remote must exist and be empty or accept a fast-forward")
    return sha
