from fleetrun.agent.cli import main

main()
