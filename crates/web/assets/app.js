// Filled in with the management API's views.
