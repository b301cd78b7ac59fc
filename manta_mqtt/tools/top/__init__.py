"""``manta-mqtt top``: a live view of a site. :mod:`.model` folds messages into a view (no I/O,
no clock), :mod:`.render` draws it with rich, :mod:`.app` connects and runs the screen."""
