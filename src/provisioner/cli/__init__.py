"""The ``provisioner`` command.

Server commands (``serve``, ``migrate``, ``purge``, ``mock-adapter``, ``demo``) run parts of
provisioner in this process; ``token`` manages API tokens in the database, as ``migrate`` and
``purge`` do. Every other
command speaks HTTP to a running service at ``--url`` (``PROVISIONER_URL``) with ``--token``
(``PROVISIONER_TOKEN``), as any other client would. Exit codes are in ``exits``.

    app.py      the commands and how outcomes become exit codes
    client.py   the client commands;  submit.py  what they share to submit and report
    follow.py   waiting for an operation (its event stream, a live table or plain lines)
    http.py     the API client: answers, or errors with their exit codes
    render.py   what is printed;  options.py  the shared options
    server.py   serve (with its start-up checks), migrate, purge, mock-adapter, demo
    tokens.py   token create / list / revoke
"""

from provisioner.cli.app import app, main

__all__ = ["app", "main"]
