"""The GraphQL resolvers, one module per concern; ``api.schema`` puts them together.

- ``accounts``: user accounts (AppSync's acms schema);
- ``catalog``: buildings and apartments;
- ``bookings``: holds, payments, cancellations, their reads and live updates;
- ``step_functions``: the Step Functions tutorial's two operations.

Who may call what is written at each resolver (``@aws_cognito_user_pools`` in the SDL, enforced
by ``api.directives.authorize``; an API key may call everything).
"""
