"""Job files and the command line: the job schema, parsing, building and the ``distnet`` commands."""
