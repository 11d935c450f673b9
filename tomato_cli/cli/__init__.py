"""The command-line apps: tomato, ketchup, passata."""
