"""Build hook (the metadata is in pyproject.toml): the deploy files pyinfra runs
(deploy.py, rollback.py, status.py, at the top of the checkout) ship inside the
package as ``nixify/deploys/``, so that ``nixify status|rollback`` find them in a
non-editable install too (``nixify.paths.deploy_file``)."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DEPLOY_FILES = ("deploy.py", "rollback.py", "status.py")


class BuildPyWithDeployFiles(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "nixify" / "deploys"
        target.mkdir(parents=True, exist_ok=True)
        for name in DEPLOY_FILES:
            self.copy_file(name, str(target / name))


setup(cmdclass={"build_py": BuildPyWithDeployFiles})
