"""``python -m queuectl.cli`` runs the CLI too, rather than importing it and exiting 0."""

# The guard matters for the same reason as in ``queuectl.__main__`` (spawned workers).
if __name__ == "__main__":
    from queuectl.cli.main import main

    main()
