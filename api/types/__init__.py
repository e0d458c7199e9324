"""The GraphQL types by feature: the two AppSync schemas, field for field, plus the contract's
additions. Output types wrap a row from ``booking.store`` and load nested objects through the
request's DataLoaders; names follow AppSync exactly (the lower-case ``stepfunctions`` type,
``updateOn``).

==================  ==========================================================
``accounts``        ``User`` and its inputs
``catalog``         ``Building``, ``Apartment``, ``Address`` and their inputs
``bookings``        ``Booking`` and the inputs of reserve, pay, extend
``waitlist``        ``WaitlistEntry``, joining
``step_functions``  the tutorial's ``stepfunctions``
``common``          the request context, ``Pagination``
==================  ==========================================================
"""
