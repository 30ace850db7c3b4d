"""The suite's tests, a package: the SageMaker SDK's dependency smdebug-rulesconfig installs a top-level
`tests` package, which would otherwise shadow this folder in `from tests.serving import ...`."""
