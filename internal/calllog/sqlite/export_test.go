package sqlite

// Migrations are the schema's steps, for the upgrade test.
var Migrations = migrations
