"""The world-runtime host and the ``worldrt`` command line."""
