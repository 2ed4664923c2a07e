"""``python -m queuectl`` runs the same CLI as the ``queuectl`` script."""

# The guard matters: worker processes are started with the ``spawn`` method, which
# re-imports the parent's main module under the name ``__mp_main__``.
if __name__ == "__main__":
    from queuectl.entry import main

    main()
