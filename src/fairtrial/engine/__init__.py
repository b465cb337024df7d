"""The engine: schedules stage runs onto resources and supervises them. Knows nothing about ML:
it calls recipe stage functions through the contract in fairtrial.recipes.api."""
