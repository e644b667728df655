"""`python -m foldertune ...` runs the command line, which is also how `torchrun -m foldertune` finds it."""

from foldertune.cli import run

if __name__ == "__main__":
    run()
